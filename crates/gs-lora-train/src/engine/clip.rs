//! Gradient clipping by the global norm, as `torch.nn.utils.clip_grad_norm_`.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::error::{Result, TrainError};

/// Scales every gradient in `grads` by `min(1, max_norm / (‖g‖ + 10⁻⁶))`, where `‖g‖` is the
/// L2 norm of all of them together (PyTorch's `clip_grad_norm_`, which the official detection
/// training applies with `max_norm` 0.1 before each AdamW step). Returns the norm before
/// clipping.
///
/// # Errors
/// [`TrainError::Data`] when the norm cannot be read back from the device.
pub fn clip_grad_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Result<f64> {
    let mut squares = SquaredNorms {
        grads,
        sums: Vec::new(),
    };
    model.visit(&mut squares);
    if squares.sums.is_empty() {
        return Ok(0.0);
    }
    let total = Tensor::cat(squares.sums, 0)
        .sum()
        .try_into_vec_as::<f64>()
        .map_err(|err| TrainError::Data(format!("reading the gradient norm back: {err}")))?[0]
        .sqrt();
    let factor = max_norm / (total + 1e-6);
    if factor < 1.0 {
        model.visit(&mut Scale { grads, factor });
    }
    Ok(total)
}

/// Collects `Σ g²` of every parameter that has a gradient.
struct SquaredNorms<'a> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            self.sums.push(grad.square().sum());
        }
    }
}

/// Multiplies every gradient by `factor`.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.factor));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<2>>,
        b: Param<Tensor<1>>,
    }

    fn grads(values: ([f32; 4], [f32; 2]), model: &Two, device: &Device) -> GradientsParams {
        let mut grads = GradientsParams::new();
        grads.register(
            model.a.id,
            Tensor::<2>::from_data(TensorData::new(values.0.to_vec(), [2, 2]), device),
        );
        grads.register(
            model.b.id,
            Tensor::<1>::from_data(TensorData::new(values.1.to_vec(), [2]), device),
        );
        grads
    }

    fn host<const D: usize>(grads: &GradientsParams, param: &Param<Tensor<D>>) -> Vec<f32> {
        grads
            .get::<D>(param.id)
            .expect("gradient")
            .try_into_vec_as::<f32>()
            .expect("f32")
    }

    /// The norm over both tensors together (3, 4, 0, 0 and 12, 0: 13), each scaled by
    /// `0.1 / 13` when above 0.1 and left alone below; both by hand. Catches a per-tensor norm
    /// (each tensor would be clipped to 0.1 on its own) and clipping below the bound.
    #[test]
    fn gradients_are_scaled_by_the_global_norm() {
        let device = Device::default();
        let zeros = |n| Tensor::<1>::zeros([n], &device);
        let model = Two {
            a: Param::from_tensor(zeros(4).reshape([2, 2])),
            b: Param::from_tensor(zeros(2)),
        };
        let mut big = grads(([3.0, 4.0, 0.0, 0.0], [12.0, 0.0]), &model, &device);
        let norm = clip_grad_norm(&model, &mut big, 0.1).expect("clip");
        assert!((norm - 13.0).abs() < 1e-5, "{norm}");
        let factor = 0.1 / (13.0 + 1e-6);
        let expected_a = [3.0, 4.0, 0.0, 0.0].map(|g: f64| (g * factor) as f32);
        let expected_b = [12.0, 0.0].map(|g: f64| (g * factor) as f32);
        for (found, expected) in host(&big, &model.a).iter().zip(expected_a) {
            assert!((found - expected).abs() < 1e-7, "{found} vs {expected}");
        }
        for (found, expected) in host(&big, &model.b).iter().zip(expected_b) {
            assert!((found - expected).abs() < 1e-7, "{found} vs {expected}");
        }
        let mut small = grads(([0.03, 0.04, 0.0, 0.0], [0.0, 0.0]), &model, &device);
        let norm = clip_grad_norm(&model, &mut small, 0.1).expect("clip");
        assert!((norm - 0.05).abs() < 1e-6, "{norm}");
        assert_eq!(host(&small, &model.a), vec![0.03, 0.04, 0.0, 0.0]);
    }
}
