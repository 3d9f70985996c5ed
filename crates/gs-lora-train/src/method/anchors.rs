//! Importance-weighted anchors of L2, EWC and MAS (PROTOCOL §3): at the start of every task a
//! term `(θ*, Ω)` is added — the parameters as the task finds them and their importance — and
//! the loss pays `Σ_k Σ_p Ω_kp (θ_p − θ*_kp)²` over all terms so far (the official `--online`
//! off).
//!
//! The terms are held merged, two tensors per parameter however many tasks have passed:
//! `Σ_k Ω_k (θ − θ*_k)² = A (θ − μ)² + C` with `A = Σ_k Ω_k`, `μ = Σ_k Ω_k θ*_k / A` and a
//! constant `C`, which moves no gradient but keeps the loss equal to the sum of the terms.
//! Adding `(θ*, Ω)`: `A' = A + Ω`, `μ' = (A μ + Ω θ*) / A'`, `C' = C + Σ A Ω / A' (μ − θ*)²`.
//!
//! Importance over batches `b` of remaining-class samples (`N_b` batches), each entry:
//! - L2: `Ω = 1`;
//! - EWC: `Ω = Σ_b |b| · g_b² / N_b`, `g_b` the gradient of the batch's mean cross-entropy on
//!   its true labels (the diagonal empirical Fisher, scaled as the official code);
//! - MAS: `Ω = Σ_b |∇ mean(z_b²)| / N_b`, `z_b` the batch's training logits.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use gs_lora_core::lora::derive_seed;
use serde::{Deserialize, Serialize};

use crate::config::MethodKind;
use crate::engine::{
    Criterion, Family, Objective, ParamSet, Task, gradients, path_params, scalar, shuffled_batches,
};
use crate::error::{Result, TrainError, io_error};
use crate::io::write_json;

/// The merged anchor terms of a run so far.
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    /// `A = Σ_k Ω_k` per parameter.
    weight: ParamSet,
    /// `μ = Σ_k Ω_k θ*_k / A` per parameter.
    center: ParamSet,
    /// What the terms hold beyond `A (θ − μ)²`.
    constant: f64,
    /// Terms added.
    terms: usize,
}

/// The numbers of [`Anchors`] beside its tensors.
#[derive(Debug, Serialize, Deserialize)]
struct AnchorCounts {
    constant: f64,
    terms: usize,
}

const WEIGHT_FILE: &str = "anchor-weight.safetensors";
const CENTER_FILE: &str = "anchor-center.safetensors";
const COUNTS_FILE: &str = "anchors.json";

impl Anchors {
    /// The number of terms added.
    pub fn terms(&self) -> usize {
        self.terms
    }

    /// Adds the term `Σ_p Ω_p (θ_p − θ*_p)²` with `θ*` = `anchor`, `Ω` = `importance` (the
    /// same paths).
    ///
    /// # Errors
    /// An importance without its anchor, or a sum that cannot be read back.
    pub fn add(&mut self, anchor: &ParamSet, importance: &ParamSet) -> Result<()> {
        for (path, omega) in importance.iter() {
            let theta = anchor
                .get(path)
                .ok_or_else(|| TrainError::Data(format!("importance of `{path}` has no anchor")))?
                .clone();
            let (weight, center) = match (self.weight.get(path), self.center.get(path)) {
                (Some(a), Some(mu)) => {
                    let sum = a.clone() + omega.clone();
                    let safe = sum.clone().clamp_min(f32::MIN_POSITIVE);
                    let gap = mu.clone() - theta.clone();
                    let joined = a.clone() * omega.clone() / safe.clone() * gap.clone() * gap;
                    self.constant += scalar(joined.sum());
                    let center = (a.clone() * mu.clone() + omega.clone() * theta) / safe;
                    (sum, center)
                }
                _ => (omega.clone(), theta),
            };
            self.weight.insert(path.clone(), weight);
            self.center.insert(path.clone(), center);
        }
        self.terms += 1;
        Ok(())
    }

    /// `Σ_k Σ_p Ω_kp (θ_p − θ*_kp)²` for `model`'s parameters, `[1]`, on its graph (0 before
    /// any term).
    pub fn penalty<M: Module>(&self, model: &M) -> Result<Tensor<1>> {
        let params = path_params(model);
        let first = params
            .first()
            .ok_or_else(|| TrainError::Data("the model has no parameter to anchor".into()))?;
        let mut total = Tensor::<1>::zeros([1], &first.value.device());
        for param in params {
            if let (Some(a), Some(mu)) =
                (self.weight.get(&param.path), self.center.get(&param.path))
            {
                let gap = param.value - mu.clone();
                total = total + (a.clone() * gap.clone() * gap).sum();
            }
        }
        Ok(total.add_scalar(self.constant))
    }

    /// Writes the anchors into the folder `dir`.
    ///
    /// # Errors
    /// File errors.
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.weight.write(&dir.join(WEIGHT_FILE))?;
        self.center.write(&dir.join(CENTER_FILE))?;
        let counts = AnchorCounts {
            constant: self.constant,
            terms: self.terms,
        };
        write_json(&dir.join(COUNTS_FILE), &counts)
    }

    /// The anchors [`write`](Self::write) left in `dir`, on `model`'s device.
    ///
    /// # Errors
    /// Missing or unreadable files, or tensors of the two files that do not pair up.
    pub fn read<M: Module>(model: &M, dir: &Path) -> Result<Self> {
        let device = path_params(model)
            .first()
            .map(|p| p.value.device())
            .ok_or_else(|| TrainError::Data("the model has no parameter to anchor".into()))?;
        let counts_path = dir.join(COUNTS_FILE);
        let text =
            std::fs::read_to_string(&counts_path).map_err(io_error("reading", &counts_path))?;
        let counts: AnchorCounts =
            serde_json::from_str(&text).map_err(|err| TrainError::Format {
                path: counts_path.clone(),
                message: err.to_string(),
            })?;
        let weight = ParamSet::read(&dir.join(WEIGHT_FILE), &device)?;
        let center = ParamSet::read(&dir.join(CENTER_FILE), &device)?;
        let paired = weight.len() == center.len()
            && weight
                .iter()
                .all(|(path, a)| center.get(path).is_some_and(|mu| mu.dims() == a.dims()));
        if !paired {
            return Err(TrainError::Format {
                path: dir.to_path_buf(),
                message: format!("{WEIGHT_FILE} and {CENTER_FILE} hold different parameters"),
            });
        }
        Ok(Self {
            weight,
            center,
            constant: counts.constant,
            terms: counts.terms,
        })
    }
}

/// The importance `method` (L2, EWC or MAS) gives the parameters `ids` of `model` over the
/// remaining-class samples `indices` of `task`, in batches of `batch_size` drawn from `seed`.
///
/// # Errors
/// Another method, no sample, a failing forward pass, or gradients that cannot be read.
pub fn importance<F: Family>(
    family: &F,
    model: &F::Model,
    method: MethodKind,
    ids: &[ParamId],
    (task, indices): (&Task, &[usize]),
    (batch_size, seed): (usize, u64),
) -> Result<ParamSet> {
    let anchor = ParamSet::of(model, ids);
    if method == MethodKind::L2 {
        let mut ones = ParamSet::default();
        for (path, theta) in anchor.iter() {
            ones.insert(path.clone(), theta.ones_like());
        }
        return Ok(ones);
    }
    if !matches!(method, MethodKind::Ewc | MethodKind::Mas) {
        return Err(TrainError::InvalidSetting(format!(
            "{method} has no importance; expected l2, ewc or mas"
        )));
    }
    let batches = shuffled_batches(indices, batch_size, seed);
    if batches.is_empty() {
        return Err(TrainError::Data(format!(
            "task {} has no remaining-class sample to measure importance on",
            task.index
        )));
    }
    let mut sums = ParamSet::default();
    for (i, chunk) in batches.iter().enumerate() {
        let batch = family.batch(chunk, &task.retain, derive_seed(seed, i as u64))?;
        let criterion = family.objective().criterion(model, batch)?;
        let (objective, squared) = match method {
            MethodKind::Ewc => (criterion.loss()?, true),
            _ => {
                let logits = criterion.logits();
                ((logits.clone() * logits).mean(), false)
            }
        };
        let grads = gradients(model, objective, ids);
        let scale = match squared {
            true => chunk.len() as f64,
            false => 1.0,
        };
        model.visit(&mut Accumulate {
            names: Vec::new(),
            grads: &grads,
            sums: &mut sums,
            squared,
            scale,
        });
    }
    let count = batches.len() as f64;
    let mut mean = ParamSet::default();
    for (path, sum) in sums.iter() {
        mean.insert(path.clone(), sum.clone().div_scalar(count));
    }
    Ok(mean)
}

/// Adds `scale · g²` (or `|g|`) of each gradient to its path's running sum.
struct Accumulate<'a> {
    names: Vec<String>,
    grads: &'a GradientsParams,
    sums: &'a mut ParamSet,
    squared: bool,
    scale: f64,
}

impl ModuleVisitor for Accumulate<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.names.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.names.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.get::<D>(param.id) else {
            return;
        };
        let numel = grad.shape().num_elements();
        let grad = grad.reshape([numel]);
        let term = match self.squared {
            true => (grad.clone() * grad).mul_scalar(self.scale),
            false => grad.abs().mul_scalar(self.scale),
        };
        let path = self.names.join(".");
        let sum = match self.sums.get(&path) {
            Some(sum) => sum.clone() + term,
            None => term,
        };
        self.sums.insert(path, sum);
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Int, TensorData};
    use gs_lora_core::loss::{Prototypes, retain_loss};
    use gs_lora_core::{LoraGroup, LoraLinear, LoraModel};

    use super::*;
    use crate::engine::Pair;
    use crate::membership::MiaEfficacy;
    use crate::report::Scores;

    /// `z = x W`, no adapters.
    #[derive(Module, Debug)]
    struct Linear {
        w: Param<Tensor<2>>,
    }

    impl LoraModel for Linear {
        fn lora_groups(&self) -> Vec<LoraGroup<&LoraLinear>> {
            Vec::new()
        }

        fn lora_groups_mut(&mut self) -> Vec<LoraGroup<&mut LoraLinear>> {
            Vec::new()
        }
    }

    /// Two samples: `x₀ = (1, 0)` of class 0 and `x₁ = (0, 2)` of class 1.
    struct Toy;

    const INPUTS: [[f32; 2]; 2] = [[1.0, 0.0], [0.0, 2.0]];

    #[derive(Debug, Clone)]
    struct ToyBatch {
        x: Tensor<2>,
        y: Tensor<1, Int>,
    }

    struct ToyCriterion {
        logits: Tensor<2>,
        y: Tensor<1, Int>,
    }

    impl Criterion for ToyCriterion {
        fn loss(&self) -> Result<Tensor<1>> {
            Ok(retain_loss(self.logits.clone(), self.y.clone())?)
        }
        fn bounded_loss(&self, _: Option<f64>, _: bool, _: crate::ForgetLoss) -> Result<Tensor<1>> {
            unreachable!("importance reads the loss and logits")
        }
        fn relabelled_loss(&self, _: &mut dyn FnMut(usize) -> usize) -> Result<Tensor<1>> {
            unreachable!("importance reads the loss and logits")
        }
        fn logits(&self) -> Tensor<2> {
            self.logits.clone()
        }
        fn features(&self) -> Tensor<2> {
            unreachable!("importance reads the loss and logits")
        }
        fn middle(&self) -> Result<Tensor<3>> {
            unreachable!("importance reads the loss and logits")
        }
    }

    impl Objective for Toy {
        type Model = Linear;
        type Batch = ToyBatch;
        type Criterion = ToyCriterion;

        fn criterion(&self, model: &Linear, batch: ToyBatch) -> Result<ToyCriterion> {
            Ok(ToyCriterion {
                logits: batch.x.matmul(model.w.val()),
                y: batch.y,
            })
        }

        fn prototype_pairs(
            &self,
            _: &Linear,
            _: Pair<&ToyCriterion>,
            _: Option<&Prototypes>,
        ) -> Result<Option<Pair<(Tensor<2>, Tensor<2>)>>> {
            unreachable!("no prototypes")
        }
    }

    impl Family for Toy {
        type Model = Linear;
        type Batch = ToyBatch;
        type Objective = Self;
        const METRIC: &'static str = "acc";

        fn classes(&self) -> Vec<usize> {
            vec![0, 1]
        }
        fn samples_of(&self, class: usize) -> Vec<usize> {
            vec![class]
        }
        fn batch(&self, indices: &[usize], _: &[usize], _: u64) -> Result<ToyBatch> {
            let device = Device::default().autodiff();
            let x: Vec<f32> = indices.iter().flat_map(|&i| INPUTS[i]).collect();
            let y: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
            Ok(ToyBatch {
                x: Tensor::from_data(TensorData::new(x, [indices.len(), 2]), &device),
                y: Tensor::from_data(TensorData::new(y, [indices.len()]), &device),
            })
        }
        fn objective(&self) -> &Self {
            self
        }
        fn evaluate(&self, _: &Linear, _: &Task) -> Result<Scores> {
            unreachable!("importance does not evaluate")
        }
        fn prototypes(&self, _: &Linear, _: &[usize], _: &[usize]) -> Result<Option<Prototypes>> {
            unreachable!("no prototypes")
        }
        fn full_model_params(&self, model: &Linear) -> Vec<ParamId> {
            vec![model.w.id]
        }
        fn lower_half_params(&self, _: &Linear) -> Result<Vec<ParamId>> {
            unreachable!("importance trains nothing")
        }
        fn membership_attack(&self, _: &Linear, _: &Task, _: u64) -> Result<Option<MiaEfficacy>> {
            unreachable!("importance does not attack")
        }
        fn load(&self, _: &Path) -> Result<Linear> {
            unreachable!("importance does not load")
        }
        fn save(&self, _: &Linear, _: &Task, _: &Path) -> Result<()> {
            unreachable!("importance does not save")
        }
    }

    /// `W = I` over the two samples, one per batch. By hand, with `p = softmax(z)` and
    /// `∇_W CE = xᵀ(p − onehot(y))`: sample 0 has `z = (1, 0)`, gradient `±(1 − σ(1))` on row 0;
    /// sample 1 has `z = (0, 2)`, gradient `±2σ(−2)` on row 1; EWC averages their squares
    /// (`|b| = 1`). MAS: `∇ mean(z²) = x_i z_j` (mean over 2 logits, times 2): `W₀₀ = 1`,
    /// `W₁₁ = 4`, halved by the average. L2 is all ones. Catches squares and magnitudes
    /// swapped, a sum instead of the mean over batches, the Fisher scaled by `|b|²`, or the
    /// gradient of the wrong objective.
    #[test]
    fn ewc_and_mas_importance_match_a_hand_computation() {
        let device = Device::default().autodiff();
        let w = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]),
            &device,
        );
        let model = Linear {
            w: Param::from_tensor(w.require_grad()),
        };
        let task = Task {
            index: 0,
            forget: Vec::new(),
            retain: vec![0, 1],
            old: Vec::new(),
            missing: Vec::new(),
        };
        let of = |method| -> Vec<f64> {
            let set = importance(
                &Toy,
                &model,
                method,
                &[model.w.id],
                (&task, &[0, 1]),
                (1, 4),
            )
            .expect("importance");
            assert_eq!(set.len(), 1);
            let (_, values) = set.iter().next().expect("w");
            values.clone().try_into_vec_as::<f64>().expect("f64")
        };
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (g0, g1) = (1.0 - sigmoid(1.0), 2.0 * sigmoid(-2.0));
        let ewc = [g0 * g0 / 2.0, g0 * g0 / 2.0, g1 * g1 / 2.0, g1 * g1 / 2.0];
        let mas = [0.5, 0.0, 0.0, 2.0];
        for (method, expected) in [(MethodKind::Ewc, ewc), (MethodKind::Mas, mas)] {
            let found = of(method);
            for (f, e) in found.iter().zip(expected) {
                assert!((f - e).abs() < 1e-6, "{method}: {found:?} vs {expected:?}");
            }
        }
        assert_eq!(of(MethodKind::L2), [1.0; 4]);
        assert!(
            importance(
                &Toy,
                &model,
                MethodKind::Lwf,
                &[model.w.id],
                (&task, &[0]),
                (1, 0)
            )
            .is_err()
        );
    }

    #[derive(Module, Debug)]
    struct Pair2 {
        w: Param<Tensor<1>>,
    }

    fn set(values: [f32; 2], device: &Device) -> ParamSet {
        let mut set = ParamSet::default();
        set.insert(
            "w".into(),
            Tensor::from_data(TensorData::new(values.to_vec(), [2]), device),
        );
        set
    }

    /// Two terms `Ω₁ = (2, 0)`, `θ*₁ = (1, 5)` and `Ω₂ = (1, 3)`, `θ*₂ = (4, −1)` at
    /// `θ = (0, 2)`: by hand `2·1² + 0·3² + 1·4² + 3·3² = 45`. The merged form gives the same
    /// value, and the same after its files are read back. Catches a merge that keeps the last
    /// term only (43), drops the constant (45 − C), or mixes up `A` and `μ` on reading.
    #[test]
    fn merged_anchors_pay_every_term() {
        let device = Device::default();
        let mut anchors = Anchors::default();
        anchors
            .add(&set([1.0, 5.0], &device), &set([2.0, 0.0], &device))
            .expect("first");
        anchors
            .add(&set([4.0, -1.0], &device), &set([1.0, 3.0], &device))
            .expect("second");
        assert_eq!(anchors.terms(), 2);
        let model = Pair2 {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.0f32, 2.0], [2]),
                &device,
            )),
        };
        let penalty = scalar(anchors.penalty(&model).expect("penalty"));
        assert!((penalty - 45.0).abs() < 1e-4, "{penalty}");

        let scratch = tempfile::tempdir().expect("scratch");
        let dir = scratch.path();
        anchors.write(dir).expect("write");
        let read = Anchors::read(&model, dir).expect("read");
        assert_eq!(read.terms(), 2);
        let again = scalar(read.penalty(&model).expect("penalty"));
        assert!((again - 45.0).abs() < 1e-4, "{again}");
        std::fs::remove_file(dir.join(CENTER_FILE)).expect("remove");
        assert!(Anchors::read(&model, dir).is_err(), "a missing file");

        let empty = scalar(Anchors::default().penalty(&model).expect("penalty"));
        assert_eq!(empty, 0.0, "no term, no penalty");
    }
}
