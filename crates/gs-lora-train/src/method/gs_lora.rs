//! GS-LoRA and GS-LoRA++: per task fresh LoRA adapters are the only trainable parameters;
//!
//! `L = L_retain + β · L_forget + α · Σ_groups ‖group‖₂ (+ L_prototype)`,
//!
//! with `L_forget = relu(BND − ·)` on the forget batch, then after each AdamW step the group
//! proximal step, and at the end of the task the adapters merged into the base weights.
//! GS-LoRA++ adds the prototype loss: forget-class embeddings pushed away from their class
//! prototype (bounded), remaining-class ones kept near theirs.
//!
//! With the proximal step (the default) the penalty is applied by the step alone, in AdamW's
//! metric (ProxGen, Yun et al., NeurIPS 2021): group `g` is thresholded at `lr · α / d_g`,
//! `d_g = √v̂_g + ε` with `v̂_g` the bias-corrected running mean (AdamW's β₂) of its squared
//! gradient entries, which is the pull the penalty's gradient has under AdamW, but reaching
//! exact zeros: the plain threshold `lr · α` is far below the `≈ lr` per entry that AdamW's
//! normalised steps keep a near-zero group moving by. A group set to zero stays switched off
//! for the rest of the task: at `A = B = 0` the other losses have zero gradient, so the
//! proximal-gradient method keeps it at zero, while AdamW's moments from before would push it
//! out again.

use burn::module::ParamId;
use burn::optim::GradientsParams;
use gs_lora_core::loss::{PrototypeLossConfig, Prototypes};
use gs_lora_core::{
    GroupLassoConfig, LoraInit, LoraModel, group_gradient_squares, group_lasso, group_norms,
    group_soft_threshold, merge_adapters, reset_adapters,
};

use crate::config::{ForgetConfig, MethodKind};
use crate::engine::{
    ADAM_BETA_2, ADAM_EPSILON, AdapterGroups, Criterion, Family, LossTerms, LossWeights, Method,
    Objective, Pair, Task, TaskSamples,
};
use crate::error::Result;

/// GS-LoRA (or GS-LoRA++, with a prototype loss) with the weights of a run's config.
#[derive(Debug, Clone)]
pub struct GsLora {
    /// `β` per task, `BND`, the group lasso and the prototype loss.
    config: ForgetConfig,
    /// The task running now.
    task: usize,
    /// The running task's class prototypes, where the family computes them up front.
    prototypes: Option<Prototypes>,
    /// Per adapter group, whether the proximal step has switched it off in the running task
    /// (then it is no longer trained).
    switched_off: Vec<bool>,
    /// Per adapter group, the running mean of its squared gradient entries in the running task
    /// (the proximal step's preconditioner), and how many steps it has seen.
    second_moments: Vec<f64>,
    /// Steps whose gradients [`Self::observe`] has seen in the running task.
    steps: i32,
}

impl GsLora {
    /// The method `config.method` with the weights of `config`; [`MethodKind::Lora`] has no
    /// group lasso (neither in the loss nor as a proximal step).
    pub fn new(config: &ForgetConfig) -> Self {
        let mut config = config.clone();
        if config.method == MethodKind::Lora {
            config.group_lasso = GroupLassoConfig {
                weight: 0.0,
                warmup_weight: None,
                proximal: false,
                ..config.group_lasso
            };
        }
        Self {
            config,
            task: 0,
            prototypes: None,
            switched_off: Vec::new(),
            second_moments: Vec::new(),
            steps: 0,
        }
    }

    /// The running task's prototype loss, with GS-LoRA++ only.
    fn prototype_loss(&self) -> Option<PrototypeLossConfig> {
        (self.config.method == MethodKind::GsLoraPlusPlus)
            .then(|| self.config.prototype_for(self.task))
    }

    /// The loss weights during `epoch` of the running task. With the proximal step the group
    /// lasso is not in the loss: the step applies it (its gradient would count it twice).
    fn weights(&self, epoch: usize) -> LossWeights {
        let lasso = &self.config.group_lasso;
        LossWeights {
            retain: 1.0,
            beta: self.config.beta_for(self.task),
            penalty: match lasso.proximal {
                true => 0.0,
                false => lasso.weight_at(epoch),
            },
        }
    }

    /// Folds one step's per-group mean squared gradient entries into the running means
    /// (AdamW's β₂ and its bias correction, so the preconditioner sees what AdamW's `v̂` sees).
    ///
    /// # Errors
    /// Malformed adapter groups, or gradients that cannot be read.
    pub fn observe<M: LoraModel>(&mut self, model: &M, grads: &GradientsParams) -> Result<()> {
        if !self.config.group_lasso.proximal {
            return Ok(());
        }
        let squares = group_gradient_squares(model, grads)?;
        self.second_moments.resize(squares.len(), 0.0);
        for (moment, square) in self.second_moments.iter_mut().zip(squares) {
            *moment = ADAM_BETA_2 * *moment + (1.0 - ADAM_BETA_2) * square;
        }
        self.steps += 1;
        Ok(())
    }

    /// The proximal thresholds `lr · α / (√v̂_g + ε)` at learning rate `lr` and weight `α`;
    /// `lr · α` for every group before any gradient was observed.
    fn thresholds(&self, groups: usize, lr: f64, alpha: f64) -> Vec<f64> {
        if self.steps == 0 {
            return vec![lr * alpha; groups];
        }
        let correction = 1.0 - ADAM_BETA_2.powi(self.steps);
        (0..groups)
            .map(|g| {
                let moment = self.second_moments.get(g).copied().unwrap_or(0.0);
                lr * alpha / ((moment / correction).sqrt() + ADAM_EPSILON)
            })
            .collect()
    }

    /// The group proximal step after an optimiser step of `epoch` at learning rate `lr`: each
    /// adapter group shrinks in norm by its threshold `lr · α / d_g` (see the module docs), and
    /// a group below it becomes exactly zero and is switched off (see [`Self::trainable_ids`]).
    /// Nothing when the config turns it off (`group_lasso.proximal`, the official behaviour).
    ///
    /// # Errors
    /// Malformed adapter groups.
    pub fn proximal_step<M: LoraModel>(
        &mut self,
        model: &mut M,
        lr: f64,
        epoch: usize,
    ) -> Result<()> {
        let lasso = &self.config.group_lasso;
        if lasso.proximal {
            let groups = model.lora_groups().len();
            let thresholds = self.thresholds(groups, lr, lasso.weight_at(epoch));
            let zero = group_soft_threshold(model, &thresholds)?;
            self.switched_off.resize(zero.len(), false);
            for (off, zero) in self.switched_off.iter_mut().zip(zero) {
                *off |= zero;
            }
        }
        Ok(())
    }

    /// The adapter parameters the optimiser steps: those of every group the proximal step has
    /// not switched off. A switched-off group is exactly zero, where the task losses have zero
    /// gradient; left to AdamW, its first and second moments from before would move it again
    /// (by about `lr` per step), so it would hover near zero instead of staying there.
    pub fn trainable_ids<M: LoraModel>(&self, model: &M) -> Vec<ParamId> {
        let groups = model.lora_groups();
        groups
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.switched_off.get(*i).copied().unwrap_or(false))
            .flat_map(|(_, group)| group.layers.iter())
            .flat_map(|layer| [layer.lora_a.id, layer.lora_b.id])
            .collect()
    }

    /// The loss of one step of `epoch` on a remaining and a forget batch of `objective`'s
    /// family (the running task's `β`, the warmed-up `α`, and with GS-LoRA++ the prototype term).
    ///
    /// # Errors
    /// A failing forward pass or loss.
    pub fn loss_of<O: Objective>(
        &self,
        objective: &O,
        model: &O::Model,
        batches: Pair<O::Batch>,
        epoch: usize,
    ) -> Result<LossTerms> {
        let criteria = Pair {
            retain: objective.criterion(model, batches.retain)?,
            forget: objective.criterion(model, batches.forget)?,
        };
        let retain = criteria.retain.loss()?;
        let forget = criteria.forget.bounded_loss(
            self.config.bnd,
            self.config.bnd_per_sample,
            self.config.forget_form(),
        )?;
        let prototype = match self.prototype_loss() {
            Some(loss) => {
                let criteria = Pair {
                    retain: &criteria.retain,
                    forget: &criteria.forget,
                };
                match objective.prototype_pairs(model, criteria, self.prototypes.as_ref())? {
                    Some(pairs) => Some(loss.loss(pairs.forget, pairs.retain)?),
                    None => None,
                }
            }
            None => None,
        };
        Ok(LossTerms::new(
            retain,
            forget,
            group_lasso(model)?,
            prototype,
            self.weights(epoch),
        ))
    }
}

impl<F: Family> Method<F> for GsLora {
    fn begin_task(
        &mut self,
        family: &F,
        model: &mut F::Model,
        task: &Task,
        samples: &TaskSamples,
        seed: u64,
    ) -> Result<()> {
        self.task = task.index;
        self.switched_off.clear();
        self.second_moments.clear();
        self.steps = 0;
        reset_adapters(model, LoraInit::for_task(task.index), seed)?;
        self.prototypes = match self.prototype_loss() {
            Some(_) => {
                let indices: Vec<usize> = samples
                    .retain
                    .iter()
                    .chain(&samples.forget)
                    .copied()
                    .collect();
                let classes: Vec<usize> = task.retain.iter().chain(&task.forget).copied().collect();
                family.prototypes(model, &indices, &classes)?
            }
            None => None,
        };
        Ok(())
    }

    fn trainable(&self, model: &F::Model) -> Vec<ParamId> {
        self.trainable_ids(model)
    }

    fn loss(
        &self,
        family: &F,
        model: &F::Model,
        batches: Pair<F::Batch>,
        epoch: usize,
    ) -> Result<LossTerms> {
        self.loss_of(family.objective(), model, batches, epoch)
    }

    fn observe_gradients(&mut self, model: &F::Model, grads: &mut GradientsParams) -> Result<()> {
        self.observe(model, grads)
    }

    fn after_step(&mut self, model: &mut F::Model, lr: f64, epoch: usize) -> Result<()> {
        self.proximal_step(model, lr, epoch)
    }

    fn end_task(&mut self, model: &mut F::Model) -> Result<AdapterGroups> {
        self.prototypes = None;
        self.switched_off.clear();
        let norms = group_norms(model)?;
        let zero = norms
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == 0.0)
            .map(|(i, _)| i)
            .collect();
        merge_adapters(model)?;
        Ok(AdapterGroups { norms, zero })
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Tensor, TensorData};
    use gs_lora_core::{GroupLassoConfig, LoraConfig, LoraGroup, LoraLinear};

    use super::*;
    use crate::engine::{adamw, gradients, optimizer_step};

    /// Two adapter groups of one 2→2 rank-1 layer each.
    #[derive(Module, Debug)]
    struct TwoGroups {
        layers: Vec<LoraLinear>,
    }

    impl LoraModel for TwoGroups {
        fn lora_groups(&self) -> Vec<LoraGroup<&LoraLinear>> {
            let groups = self.layers.iter().enumerate();
            groups
                .map(|(i, l)| LoraGroup::new(format!("g{i}"), vec![l]))
                .collect()
        }

        fn lora_groups_mut(&mut self) -> Vec<LoraGroup<&mut LoraLinear>> {
            let groups = self.layers.iter_mut().enumerate();
            groups
                .map(|(i, l)| LoraGroup::new(format!("g{i}"), vec![l]))
                .collect()
        }
    }

    fn param(values: [f32; 2], shape: [usize; 2], device: &Device) -> Param<Tensor<2>> {
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values.to_vec(), shape),
            device,
        ))
    }

    /// One update against a hand AdamW step (first step: `θ(1 − lr·λ) − lr·g/(|g| + ε)`)
    /// followed by the group soft-threshold at `τ_g = lr·α / (√v̂_g + ε)`, `v̂_g` the mean of the
    /// group's squared gradient entries (first step: bias-corrected, it is that mean): the small
    /// group becomes exactly zero, the other shrinks by `1 − τ_g/‖g‖`. Catches the plain
    /// threshold `lr·α` (the small group survives), one preconditioner for every group, a
    /// missing bias correction (τ 1000× larger: both groups vanish), a missing proximal step,
    /// and the optimiser stepping with another learning rate.
    #[test]
    fn an_update_is_adamw_then_the_group_soft_threshold() {
        let device = Device::default().autodiff();
        let layer = |a: [f32; 2], b: [f32; 2], seed| {
            let base = LinearConfig::new(2, 2).init(&device);
            let mut layer = LoraConfig::new()
                .with_rank(1)
                .init(base, seed)
                .expect("layer");
            layer.lora_a = param(a, [2, 1], &device);
            layer.lora_b = param(b, [1, 2], &device);
            layer
        };
        let initial = [
            ([0.05f32, -0.05], [0.05f32, 0.02]),
            ([1.0, 2.0], [3.0, -1.0]),
        ];
        let mut model = TwoGroups {
            layers: initial.iter().map(|(a, b)| layer(*a, *b, 1)).collect(),
        };
        // Loss Σ A ⊙ C_A + Σ B ⊙ C_B: constant gradients C, small enough (1e-4) that AdamW's
        // ε matters: ε = 1e-5 (Burn's default) would shorten the first step by 9%.
        let grads_of = [
            ([1e-4f32, -2e-4], [0.5e-4f32, 3e-4]),
            ([-1e-4, 1e-4], [2e-4, -0.5e-4]),
        ];
        let loss = model
            .layers
            .iter()
            .zip(&grads_of)
            .map(|(layer, (ca, cb))| {
                let ca = Tensor::<2>::from_data(TensorData::new(ca.to_vec(), [2, 1]), &device);
                let cb = Tensor::<2>::from_data(TensorData::new(cb.to_vec(), [1, 2]), &device);
                (layer.lora_a.val() * ca).sum() + (layer.lora_b.val() * cb).sum()
            })
            .reduce(|a, b| a + b)
            .expect("two layers");
        let (lr, alpha, decay, eps) = (0.1, 3e-4, 0.05, 1e-8);
        let mut optimizer = adamw(decay);
        let mut method = GsLora::new(&ForgetConfig {
            group_lasso: GroupLassoConfig::new().with_weight(alpha),
            ..ForgetConfig::default()
        });
        let trainable = gs_lora_core::adapter_param_ids(&model);
        let grads = gradients(&model, loss, &trainable);
        method.observe(&model, &grads).expect("observe");
        model = optimizer.step(lr, model, grads);
        method
            .proximal_step(&mut model, lr, 0)
            .expect("proximal step");

        let step = |theta: f32, g: f32| {
            let (theta, g) = (f64::from(theta), f64::from(g));
            theta * (1.0 - lr * decay) - lr * g / (g.abs() + eps)
        };
        for (((a, b), (ca, cb)), layer) in initial.iter().zip(&grads_of).zip(&model.layers) {
            let squares = ca.iter().chain(cb).map(|g| f64::from(*g).powi(2));
            let threshold = lr * alpha / ((squares.sum::<f64>() / 4.0).sqrt() + eps);
            let stepped: Vec<f64> = a
                .iter()
                .zip(ca)
                .chain(b.iter().zip(cb))
                .map(|(t, g)| step(*t, *g))
                .collect();
            let norm = stepped.iter().map(|v| v * v).sum::<f64>().sqrt();
            let factor = if norm <= threshold {
                0.0
            } else {
                1.0 - threshold / norm
            };
            let found: Vec<f64> = [layer.lora_a.val(), layer.lora_b.val()]
                .into_iter()
                .flat_map(|t| t.into_data().try_to_vec::<f32>().expect("f32"))
                .map(f64::from)
                .collect();
            for (found, stepped) in found.iter().zip(&stepped) {
                assert!(
                    (found - stepped * factor).abs() < 1e-5,
                    "{found} vs {}",
                    stepped * factor
                );
            }
        }
        let norms = gs_lora_core::group_norms(&model).expect("norms");
        assert_eq!(norms[0], 0.0, "the small group is exactly zero: {norms:?}");
        assert!(norms[1] > 1.0);
    }

    /// `lora` is GS-LoRA without the group lasso: a weight large enough to zero every group
    /// (with its warm-up weight) neither enters the loss nor thresholds a group. Catches the
    /// baseline keeping the proximal step or the warmed-up weight.
    #[test]
    fn lora_has_no_group_lasso() {
        let device = Device::default().autodiff();
        let base = LinearConfig::new(2, 2).init(&device);
        let mut layer = LoraConfig::new().with_rank(1).init(base, 1).expect("layer");
        layer.lora_b = param([0.5, 0.5], [1, 2], &device);
        let mut model = TwoGroups {
            layers: vec![layer],
        };
        let lasso = GroupLassoConfig::new()
            .with_weight(1e3)
            .with_warmup_epochs(1)
            .with_warmup_weight(Some(1e3));
        let mut method = GsLora::new(&ForgetConfig {
            method: MethodKind::Lora,
            group_lasso: GroupLassoConfig {
                proximal: true,
                ..lasso
            },
            ..ForgetConfig::default()
        });
        for epoch in 0..3 {
            assert_eq!(method.weights(epoch).penalty, 0.0);
        }
        let before = gs_lora_core::group_norms(&model).expect("norms");
        method.proximal_step(&mut model, 0.1, 2).expect("step");
        assert_eq!(gs_lora_core::group_norms(&model).expect("norms"), before);
        assert!(before[0] > 0.0);
    }

    /// A group the proximal step switched off leaves the trainable set, so later optimiser
    /// steps keep it exactly zero although AdamW still holds its moments (and here the loss
    /// still has a gradient for it); the other group keeps training. Catches `trainable`
    /// returning every adapter (the zero group moves by about `lr` on the next step).
    #[test]
    fn a_switched_off_group_stays_zero_through_later_steps() {
        let device = Device::default().autodiff();
        let layer = |a: [f32; 2], b: [f32; 2]| {
            let base = LinearConfig::new(2, 2).init(&device);
            let mut layer = LoraConfig::new().with_rank(1).init(base, 1).expect("layer");
            layer.lora_a = param(a, [2, 1], &device);
            layer.lora_b = param(b, [1, 2], &device);
            layer
        };
        let mut model = TwoGroups {
            layers: vec![
                layer([0.01, 0.01], [0.01, 0.0]),
                layer([1.0, 2.0], [3.0, -1.0]),
            ],
        };
        // A loss with the same gradient everywhere, zero included: Σ A + Σ B.
        let loss = |model: &TwoGroups| {
            let terms = model
                .layers
                .iter()
                .map(|l| l.lora_a.val().sum() + l.lora_b.val().sum());
            terms.reduce(|a, b| a + b).expect("two layers")
        };
        let mut method = GsLora::new(&ForgetConfig {
            group_lasso: GroupLassoConfig::new().with_weight(1.0),
            ..ForgetConfig::default()
        });
        let ids = |layer: &LoraLinear| vec![layer.lora_a.id, layer.lora_b.id];
        let all = gs_lora_core::adapter_param_ids(&model);
        assert_eq!(method.trainable_ids(&model), all);
        let mut optimizer = adamw(0.0);
        let lr = 0.01;
        for step in 0..5 {
            let trainable = method.trainable_ids(&model);
            let value = loss(&model);
            optimizer_step(&mut model, &mut optimizer, value, &trainable, lr);
            method.proximal_step(&mut model, lr, 0).expect("proximal");
            let norms = gs_lora_core::group_norms(&model).expect("norms");
            assert_eq!(
                norms[0], 0.0,
                "step {step}: the small group is zero: {norms:?}"
            );
            assert!(norms[1] > 1.0, "step {step}: {norms:?}");
        }
        assert_eq!(method.trainable_ids(&model), ids(&model.layers[1]));
    }

    /// With `group_lasso.proximal` off (the official behaviour) the step after the optimiser
    /// changes nothing, even a group far below the threshold; on, that group becomes zero.
    #[test]
    fn the_proximal_step_can_be_turned_off() {
        let device = Device::default();
        let small = || {
            let base = LinearConfig::new(2, 2).init(&device);
            let mut layer = LoraConfig::new().with_rank(1).init(base, 1).expect("layer");
            layer.lora_a = param([1e-3, 1e-3], [2, 1], &device);
            layer.lora_b = param([1e-3, 0.0], [1, 2], &device);
            TwoGroups {
                layers: vec![layer],
            }
        };
        let norms_after = |proximal: bool| {
            let mut model = small();
            let config = ForgetConfig {
                group_lasso: GroupLassoConfig::new()
                    .with_weight(1.0)
                    .with_proximal(proximal),
                ..ForgetConfig::default()
            };
            GsLora::new(&config)
                .proximal_step(&mut model, 0.1, 0)
                .expect("step");
            gs_lora_core::group_norms(&model).expect("norms")
        };
        let untouched = gs_lora_core::group_norms(&small()).expect("norms");
        assert_eq!(norms_after(false), untouched);
        assert_eq!(norms_after(true), vec![0.0]);
    }
}
