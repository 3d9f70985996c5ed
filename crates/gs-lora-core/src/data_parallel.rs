//! Data parallelism: one forward pass split across devices, its outputs gathered on the model's
//! device, so that the loss (whatever it is) sees the whole batch.
//!
//! ```text
//! input [B, …] ─split→ shard_k [B_k, …] ─to d_k→ replica_k(shard_k) ─to d_0→ cat → output [B, …]
//! replica_k = model.to_device(d_k)      (differentiable: its gradients flow back to the model)
//! ```
//!
//! The replicas are made with Burn's differentiable `Module::to_device`, not `fork`, so the
//! backward pass of a loss on the gathered output carries every shard's gradient back to the
//! model's own parameters on `d_0`, where they add up: one optimiser step then sees exactly
//! the gradient of the whole batch (PyTorch's `DataParallel`: replicate, scatter, gather). A loss
//! that is not a sum over samples (the batch-mean forgetting bound `relu(BND − mean CE)`, the
//! prototype bound) is therefore the same as on one device, not a mean of per-shard losses.

use std::ops::Range;

use burn::module::Module;
use burn::tensor::kind::Basic;
use burn::tensor::{Device, Tensor};

use crate::error::{CoreError, Result};

/// A batch of rows that can be split into shards, moved and put back together: a model's
/// input or output along its first (batch) dimension.
pub trait Batched: Sized {
    /// The number of rows (the batch size).
    fn rows(&self) -> usize;

    /// The rows `range`.
    fn narrow_rows(&self, range: Range<usize>) -> Self;

    /// The same rows on `device`.
    fn moved_to(self, device: &Device) -> Self;

    /// `parts` concatenated in order, on the device of the first part.
    fn cat_rows(parts: Vec<Self>) -> Self;
}

/// A tensor of any kind (float values, boolean masks, integer labels).
impl<const D: usize, K: Basic> Batched for Tensor<D, K> {
    fn rows(&self) -> usize {
        self.dims()[0]
    }

    fn narrow_rows(&self, range: Range<usize>) -> Self {
        self.clone().narrow(0, range.start, range.len())
    }

    fn moved_to(self, device: &Device) -> Self {
        Tensor::to_device(self, device)
    }

    fn cat_rows(parts: Vec<Self>) -> Self {
        Tensor::cat(parts, 0)
    }
}

/// `None` stays `None` (every part must agree; the rows of a `None` are 0).
impl<T: Batched> Batched for Option<T> {
    fn rows(&self) -> usize {
        self.as_ref().map_or(0, T::rows)
    }

    fn narrow_rows(&self, range: Range<usize>) -> Self {
        self.as_ref().map(|t| t.narrow_rows(range))
    }

    fn moved_to(self, device: &Device) -> Self {
        self.map(|t| t.moved_to(device))
    }

    fn cat_rows(parts: Vec<Self>) -> Self {
        parts
            .into_iter()
            .collect::<Option<Vec<T>>>()
            .map(T::cat_rows)
    }
}

/// A pair split alike; its rows are the first's.
impl<A: Batched, B: Batched> Batched for (A, B) {
    fn rows(&self) -> usize {
        self.0.rows()
    }

    fn narrow_rows(&self, range: Range<usize>) -> Self {
        (self.0.narrow_rows(range.clone()), self.1.narrow_rows(range))
    }

    fn moved_to(self, device: &Device) -> Self {
        (self.0.moved_to(device), self.1.moved_to(device))
    }

    fn cat_rows(parts: Vec<Self>) -> Self {
        let (a, b) = parts.into_iter().unzip();
        (A::cat_rows(a), B::cat_rows(b))
    }
}

/// The devices a batch is split across. The first holds the model, its gradients and the
/// optimiser; a device may be named twice (two shards on one device: how the split is tested on
/// a machine with one device).
#[derive(Debug, Clone, PartialEq)]
pub struct DataParallel {
    devices: Vec<Device>,
}

impl DataParallel {
    /// Batches split across `devices`, the model on the first.
    ///
    /// # Errors
    /// [`CoreError::OutOfRange`] for an empty list.
    pub fn new(devices: Vec<Device>) -> Result<Self> {
        if devices.is_empty() {
            return Err(CoreError::OutOfRange {
                name: "the number of devices",
                expected: "at least 1",
                value: 0.0,
            });
        }
        Ok(Self { devices })
    }

    /// Everything on `device`: no split.
    pub fn single(device: &Device) -> Self {
        Self {
            devices: vec![device.clone()],
        }
    }

    /// The device that holds the model.
    pub fn primary(&self) -> &Device {
        &self.devices[0]
    }

    /// Every device, the primary first.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The row ranges of a batch of `rows` rows, one per device in order: contiguous, sizes
    /// differing by at most one, the larger first; devices beyond `rows` get none.
    pub fn shards(&self, rows: usize) -> Vec<Range<usize>> {
        let parts = self.devices.len().min(rows.max(1));
        let (base, extra) = (rows / parts, rows % parts);
        let mut start = 0;
        (0..parts)
            .map(|k| {
                let len = base + usize::from(k < extra);
                start += len;
                start - len..start
            })
            .collect()
    }

    /// `forward(model, input)` with the batch split across the devices: shard `k` runs on
    /// `model.to_device(d_k)` (the model itself for `k = 0`), and the outputs are gathered on
    /// the primary device in order. On one device, `forward(model, input)` as is.
    ///
    /// - `model`: on the primary device.
    /// - `input`, output: rows along the first dimension.
    ///
    /// # Errors
    /// The errors of `forward`.
    pub fn forward<M, I, O, E>(
        &self,
        model: &M,
        input: I,
        forward: impl Fn(&M, I) -> std::result::Result<O, E>,
    ) -> std::result::Result<O, E>
    where
        M: Module + Clone,
        I: Batched,
        O: Batched,
    {
        if self.devices.len() == 1 {
            return forward(model, input);
        }
        let shards = self.shards(input.rows());
        let mut outputs = Vec::with_capacity(shards.len());
        for (k, (rows, device)) in shards.into_iter().zip(&self.devices).enumerate() {
            let shard = input.narrow_rows(rows).moved_to(device);
            let output = match k {
                0 => forward(model, shard)?,
                _ => forward(&model.clone().to_device(device), shard)?,
            };
            outputs.push(output.moved_to(self.primary()));
        }
        Ok(O::cat_rows(outputs))
    }
}

impl From<&Device> for DataParallel {
    fn from(device: &Device) -> Self {
        Self::single(device)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    use super::*;

    /// Sizes differ by at most one, the larger first, contiguous, and no device gets an empty
    /// shard. Catches a remainder dropped or put last, or a shard for every device of a short
    /// batch.
    #[test]
    fn shards_cover_the_batch_in_order() {
        let device = Device::default();
        let three = DataParallel::new(vec![device.clone(); 3]).expect("devices");
        assert_eq!(three.shards(8), vec![0..3, 3..6, 6..8]);
        assert_eq!(three.shards(6), vec![0..2, 2..4, 4..6]);
        assert_eq!(three.shards(2), vec![0..1, 1..2]);
        assert_eq!(three.shards(1), vec![0..1]);
        assert_eq!(DataParallel::single(&device).shards(5), vec![0..5]);
        assert!(DataParallel::new(Vec::new()).is_err());
    }

    /// A loss that is not a sum over rows (`relu(3 − mean)²` of a linear layer's outputs, the
    /// shape of the batch-mean bound) on 7 rows split over three shards: the value and the
    /// layer's gradients as on one device. Catches shards gathered out of order, a shard's
    /// gradient lost on the way back (a replica made with `fork`, which detaches), or a mean of
    /// per-shard losses.
    #[test]
    fn a_split_forward_gives_the_whole_batch_loss_and_gradient() {
        let device = Device::default().autodiff();
        let layer: Linear = LinearConfig::new(4, 2).init(&device);
        let values: Vec<f32> = (0..28).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let input = Tensor::<2>::from_data(TensorData::new(values, [7, 4]), &device);
        let loss_and_grads = |parallel: &DataParallel| {
            let output = parallel
                .forward(&layer, input.clone(), |layer, x| {
                    Ok::<_, CoreError>(layer.forward(x))
                })
                .expect("forward");
            let gap = output.mean().neg().add_scalar(3.0).clamp_min(0.0);
            let loss = gap.clone() * gap;
            let grads = loss.backward();
            let weight = layer.weight.grad(&grads).expect("weight gradient");
            let bias = layer
                .bias
                .as_ref()
                .and_then(|b| b.grad(&grads))
                .expect("bias gradient");
            let floats = |t: Tensor<1>| t.try_into_vec_as::<f32>().expect("floats");
            (floats(loss)[0], floats(weight.flatten(0, 1)), floats(bias))
        };
        let one = loss_and_grads(&DataParallel::single(&device));
        let three = loss_and_grads(&DataParallel::new(vec![device.clone(); 3]).expect("devices"));
        assert!((one.0 - three.0).abs() < 1e-6, "{} vs {}", one.0, three.0);
        for (a, b) in one
            .1
            .iter()
            .chain(&one.2)
            .zip(three.1.iter().chain(&three.2))
        {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert!(
            one.1.iter().any(|g| g.abs() > 1e-3),
            "a gradient to compare"
        );
    }
}
