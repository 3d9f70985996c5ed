//! Baselines that train every parameter but the head, as the official baselines do (PROTOCOL
//! §3, §4: which parameters is the family's [`Family::full_model_params`]):
//!
//! - fine-tuning with GS-LoRA's losses, `L = CE(R) + β · relu(BND − CE(F))`: what training
//!   the whole model instead of low-rank adapters changes;
//! - NegGrad+ (Kurmanji et al., NeurIPS 2023), `L = CE(R) − β · CE(F)`: descent on the
//!   remaining classes, unbounded ascent on the forget classes;
//! - random labelling (Golatkar et al. 2020; SalUn's `RL`), `L = CE(R) + CE(F → ŷ)`: each forget
//!   sample trained towards a remaining class `ŷ` drawn uniformly, anew at every step;
//! - Retrain by fine-tuning (`retrain-ft`), `L = CE(R)`: the forget batch is not used, so
//!   the forget classes fade only as the remaining ones take the model over (the official
//!   detection Retrain; SalUn's `FT`);
//! - Retrain from scratch (`retrain`), `L = CE(R)` on a model drawn afresh before the first
//!   task ([`reinitialise`]), every parameter trained, the head included, the learning rate
//!   warmed up linearly from 1e-6 over [`RETRAIN_WARMUP`] epochs (the official classification
//!   Retrain). Its scores before the first task are the pretrained model's, so its H is
//!   measured against what was there to forget (the official one measures a random model,
//!   PROTOCOL §6.10);
//! - SalUn (Fan et al., ICLR 2024): random labelling that only moves the salient half of the
//!   weights: at the start of a task, the magnitude of the forget loss's gradient, summed over
//!   the task's forget batches, ranks every trained entry; the top [`SALIENT_SHARE`] keep their
//!   gradients, the others are masked to zero at every step.
//!
//! The model's adapters are reset at the start of a task and merged at its end, as with the
//! adapter methods, but never trained: they stay zero, so the model is its base weights.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use gs_lora_core::lora::derive_seed;
use gs_lora_core::{LoraInit, merge_adapters, reset_adapters};

use crate::config::{ForgetConfig, MethodKind};
use crate::engine::{
    AdapterGroups, Criterion, Family, LossTerms, LossWeights, Method, Objective, Pair, Task,
    TaskSamples, gradients, param_ids_where, shuffled_batches,
};
use crate::error::{Result, TrainError};
use crate::method::relabel::{RelabelRule, Relabeller};
use crate::method::scratch::reinitialise;

/// The share of the trained entries SalUn lets move (its default threshold, 0.5).
pub const SALIENT_SHARE: f64 = 0.5;

/// Retrain's warm-up epochs (`--warmup-epochs 5` in the official scripts).
pub const RETRAIN_WARMUP: usize = 5;

/// A full-model baseline with the weights of a run's config.
pub struct FullModel {
    /// `β` per task, `BND`, and which baseline.
    config: ForgetConfig,
    /// The task running now.
    task: usize,
    /// The parameters trained in the running task.
    trainable: Vec<ParamId>,
    /// Draws the random labels (remaining classes), seeded per task.
    relabel: Relabeller,
    /// SalUn's mask of the running task: 1 on the entries that train, 0 elsewhere.
    mask: Option<GradientsParams>,
}

impl FullModel {
    /// The baseline `config.method` with the weights of `config`.
    pub fn new(config: &ForgetConfig) -> Self {
        Self {
            config: config.clone(),
            task: 0,
            trainable: Vec::new(),
            relabel: Relabeller::new(RelabelRule::Remaining),
            mask: None,
        }
    }

    /// The loss of one step on a remaining and a forget batch of `objective`'s family.
    ///
    /// # Errors
    /// A failing forward pass or loss, or random labels with no remaining class to draw.
    pub fn loss_of<O: Objective>(
        &self,
        objective: &O,
        model: &O::Model,
        batches: Pair<O::Batch>,
    ) -> Result<LossTerms> {
        let retain = objective.criterion(model, batches.retain)?.loss()?;
        let lasso = retain.zeros_like();
        if matches!(
            self.config.method,
            MethodKind::RetrainFt | MethodKind::Retrain
        ) {
            let weights = LossWeights {
                retain: 1.0,
                beta: 0.0,
                penalty: 0.0,
            };
            return Ok(LossTerms::new(retain, lasso.clone(), lasso, None, weights));
        }
        let forget = objective.criterion(model, batches.forget)?;
        let beta = self.config.beta_for(self.task);
        let (forget, beta) = match self.config.method {
            MethodKind::NegGradPlus => (forget.loss()?, -beta),
            MethodKind::RandomLabels | MethodKind::SalUn => {
                let mut draw = |label| self.relabel.draw(label);
                (forget.relabelled_loss(&mut draw)?, 1.0)
            }
            _ => (
                forget.bounded_loss(
                    self.config.bnd,
                    self.config.bnd_per_sample,
                    self.config.forget_form(),
                )?,
                beta,
            ),
        };
        let weights = LossWeights {
            retain: 1.0,
            beta,
            penalty: 0.0,
        };
        Ok(LossTerms::new(retain, forget, lasso, None, weights))
    }
}

/// SalUn's mask over the parameters `trainable` of `model`: the forget loss's gradient
/// magnitude summed over `samples.forget` in batches of `batch_size` (drawn in an order from
/// `seed`), then [`saliency_mask`].
///
/// # Errors
/// A failing forward pass, or gradients that cannot be read.
fn forget_saliency<F: Family>(
    family: &F,
    model: &F::Model,
    task: &Task,
    samples: &TaskSamples,
    trainable: &[ParamId],
    (batch_size, seed): (usize, u64),
) -> Result<GradientsParams> {
    let mut sums = GradientsParams::new();
    for (i, chunk) in shuffled_batches(&samples.forget, batch_size, seed)
        .iter()
        .enumerate()
    {
        let batch = family.batch(chunk, &task.forget, derive_seed(seed, i as u64))?;
        let loss = family.objective().criterion(model, batch)?.loss()?;
        let grads = gradients(model, loss, trainable);
        model.visit(&mut AddMagnitudes {
            sums: &mut sums,
            grads: &grads,
        });
    }
    saliency_mask(model, &sums, SALIENT_SHARE)
}

/// Adds each gradient's magnitude to its running sum.
struct AddMagnitudes<'a> {
    sums: &'a mut GradientsParams,
    grads: &'a GradientsParams,
}

impl ModuleVisitor for AddMagnitudes<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let sum = match self.sums.remove::<D>(param.id) {
                Some(sum) => sum + grad.abs(),
                None => grad.abs(),
            };
            self.sums.register(param.id, sum);
        }
    }
}

/// The mask that keeps the `share` largest entries of `scores` over all of `model`'s
/// parameters together (1 at or above the threshold, 0 below).
///
/// # Errors
/// Scores that cannot be read back.
pub fn saliency_mask<M: Module>(
    model: &M,
    scores: &GradientsParams,
    share: f64,
) -> Result<GradientsParams> {
    struct Collect<'a> {
        scores: &'a GradientsParams,
        values: Vec<f32>,
        failed: Option<String>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(score) = self.scores.get::<D>(param.id) {
                match score.try_into_vec_as::<f32>() {
                    Ok(values) => self.values.extend(values),
                    Err(err) => self.failed = Some(err.to_string()),
                }
            }
        }
    }
    struct Threshold<'a> {
        scores: &'a GradientsParams,
        mask: GradientsParams,
        threshold: f32,
    }
    impl ModuleVisitor for Threshold<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(score) = self.scores.get::<D>(param.id) {
                let keep = score.greater_equal_elem(self.threshold).float();
                self.mask.register(param.id, keep);
            }
        }
    }
    let mut collect = Collect {
        scores,
        values: Vec::new(),
        failed: None,
    };
    model.visit(&mut collect);
    if let Some(err) = collect.failed {
        return Err(TrainError::Data(format!("reading saliency scores: {err}")));
    }
    let mut values = collect.values;
    let kept = ((values.len() as f64 * share).ceil() as usize).clamp(1, values.len().max(1));
    let threshold = match values.len() {
        0 => 0.0,
        n => *values.select_nth_unstable_by(n - kept, f32::total_cmp).1,
    };
    let mut masks = Threshold {
        scores,
        mask: GradientsParams::new(),
        threshold,
    };
    model.visit(&mut masks);
    Ok(masks.mask)
}

/// Multiplies each gradient of `grads` by its entry of `mask` (gradients without one stay).
pub fn apply_mask<M: Module>(model: &M, grads: &mut GradientsParams, mask: &GradientsParams) {
    struct Apply<'a> {
        grads: &'a mut GradientsParams,
        mask: &'a GradientsParams,
    }
    impl ModuleVisitor for Apply<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let (Some(keep), Some(grad)) = (
                self.mask.get::<D>(param.id),
                self.grads.remove::<D>(param.id),
            ) {
                self.grads.register(param.id, grad * keep);
            }
        }
    }
    model.visit(&mut Apply { grads, mask });
}

impl<F: Family> Method<F> for FullModel {
    fn begin_task(
        &mut self,
        family: &F,
        model: &mut F::Model,
        task: &Task,
        samples: &TaskSamples,
        seed: u64,
    ) -> Result<()> {
        self.task = task.index;
        if matches!(
            self.config.method,
            MethodKind::RandomLabels | MethodKind::SalUn
        ) {
            self.relabel.begin_task(task, derive_seed(seed, 5))?;
        }
        if self.config.method == MethodKind::Retrain && task.index == 0 {
            *model = reinitialise(model.clone(), derive_seed(seed, 10));
        }
        reset_adapters(model, LoraInit::for_task(task.index), seed)?;
        self.trainable = match self.config.method {
            MethodKind::Retrain => {
                param_ids_where(model, |path| !matches!(path.field(), "lora_a" | "lora_b"))
            }
            MethodKind::Lirf => family.lower_half_params(model)?,
            _ => family.full_model_params(model),
        };
        let group = ParamGroup::from_ids(self.trainable.clone());
        *model = model.clone().unfreeze_group(group);
        self.mask = match self.config.method {
            MethodKind::SalUn => Some(forget_saliency(
                family,
                model,
                task,
                samples,
                &self.trainable,
                (self.config.batch_size, derive_seed(seed, 6)),
            )?),
            _ => None,
        };
        Ok(())
    }

    fn trainable(&self, _: &F::Model) -> Vec<ParamId> {
        self.trainable.clone()
    }

    fn loss(
        &self,
        family: &F,
        model: &F::Model,
        batches: Pair<F::Batch>,
        _: usize,
    ) -> Result<LossTerms> {
        self.loss_of(family.objective(), model, batches)
    }

    fn observe_gradients(&mut self, model: &F::Model, grads: &mut GradientsParams) -> Result<()> {
        if let Some(mask) = &self.mask {
            apply_mask(model, grads, mask);
        }
        Ok(())
    }

    /// Retrain's warm-up, `1e-6 + e·(lr − 1e-6)/W` for epochs `e < W`, then the cosine
    /// schedule (not shifted, as timm's); the others' cosine schedule.
    fn lr(&self, config: &ForgetConfig, epoch: usize) -> f64 {
        match self.config.method == MethodKind::Retrain && epoch < RETRAIN_WARMUP {
            true => 1e-6 + epoch as f64 * (config.lr - 1e-6) / RETRAIN_WARMUP as f64,
            false => config.lr_at(epoch),
        }
    }

    fn end_task(&mut self, model: &mut F::Model) -> Result<AdapterGroups> {
        merge_adapters(model)?;
        *model = model.clone().no_grad();
        self.trainable.clear();
        self.mask = None;
        Ok(AdapterGroups::default())
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::{Device, Tensor, TensorData};
    use gs_lora_core::LoraConfig;
    use gs_lora_core::loss::Prototypes;
    use gs_lora_models::VisionTransformer;
    use gs_lora_models::vit::VitConfig;
    use gs_lora_models::weights::SeededInit;

    use super::*;
    use crate::classification::embedded_config;

    /// A criterion of fixed values: cross-entropy `ce`, bounded loss `bounded`.
    struct Fixed {
        ce: f32,
        bounded: f32,
    }

    fn value(v: f32) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![v], [1]), &Device::default())
    }

    impl Criterion for Fixed {
        fn loss(&self) -> Result<Tensor<1>> {
            Ok(value(self.ce))
        }

        fn bounded_loss(&self, _: Option<f64>, _: bool, _: crate::ForgetLoss) -> Result<Tensor<1>> {
            Ok(value(self.bounded))
        }

        /// The new label of a class-7 sample, as the loss.
        fn relabelled_loss(&self, relabel: &mut dyn FnMut(usize) -> usize) -> Result<Tensor<1>> {
            Ok(value(relabel(7) as f32))
        }

        fn logits(&self) -> Tensor<2> {
            unreachable!("the full-model baselines read losses only")
        }

        fn features(&self) -> Tensor<2> {
            unreachable!("the full-model baselines read losses only")
        }

        fn middle(&self) -> Result<Tensor<3>> {
            unreachable!("the full-model baselines read losses only")
        }
    }

    /// Batches are the criterion's values.
    struct FixedObjective;

    impl Objective for FixedObjective {
        type Model = VisionTransformer;
        type Batch = (f32, f32);
        type Criterion = Fixed;

        fn criterion(&self, _: &VisionTransformer, (ce, bounded): (f32, f32)) -> Result<Fixed> {
            Ok(Fixed { ce, bounded })
        }

        fn prototype_pairs(
            &self,
            _: &VisionTransformer,
            _: Pair<&Fixed>,
            _: Option<&Prototypes>,
        ) -> Result<Option<Pair<(Tensor<2>, Tensor<2>)>>> {
            Ok(None)
        }
    }

    /// A one-block ViT (its forward pass is never read by the fixed criteria).
    fn tiny_vit() -> VisionTransformer {
        let config = VitConfig {
            hidden_size: 8,
            depth: 1,
            num_heads: 2,
            mlp_hidden: 16,
            ..embedded_config(8, 3)
        };
        let lora = LoraConfig::new().with_rank(2);
        VisionTransformer::load(
            &config,
            &mut SeededInit::new(0),
            &lora,
            0,
            &Device::default(),
        )
        .expect("model")
    }

    /// With retain CE 1.5, forget CE 2 and forget bounded loss 0.25 at β 0.3: fine-tuning
    /// minimises 1.5 + 0.3·0.25, NegGrad+ 1.5 − 0.3·2 (ascent on the forget CE), Retrain by
    /// fine-tuning 1.5; none has a penalty. Catches the ascent's sign, NegGrad+ reading the
    /// bounded loss, and a forget term left in Retrain.
    #[test]
    fn fine_tuning_bounds_the_forget_loss_and_neg_grad_ascends_it() {
        let model = tiny_vit();
        let batches = || Pair {
            retain: (1.5, 9.0),
            forget: (2.0, 0.25),
        };
        let total = |method| {
            let config = ForgetConfig {
                method,
                beta: vec![0.3],
                ..ForgetConfig::default()
            };
            let values = FullModel::new(&config)
                .loss_of(&FixedObjective, &model, batches())
                .expect("loss")
                .values();
            assert_eq!(values.penalty, 0.0);
            (values.total, values.forget)
        };
        let (tune, tune_forget) = total(MethodKind::FineTune);
        assert!((tune - (1.5 + 0.3 * 0.25)).abs() < 1e-6, "{tune}");
        assert!((tune_forget - 0.25).abs() < 1e-6);
        let (neg, neg_forget) = total(MethodKind::NegGradPlus);
        assert!((neg - (1.5 - 0.3 * 2.0)).abs() < 1e-6, "{neg}");
        assert!((neg_forget - 2.0).abs() < 1e-6);
        assert_eq!(
            total(MethodKind::RetrainFt),
            (1.5, 0.0),
            "the remaining classes alone"
        );
        assert_eq!(total(MethodKind::Retrain), (1.5, 0.0));
    }

    /// Retrain warms up from 1e-6 to its rate over 5 epochs (epoch 0 at 1e-6, epoch 4 at
    /// `1e-6 + 4/5 (lr − 1e-6)`), then follows the cosine schedule unshifted; the other
    /// baselines follow it from the start. Catches the warm-up missing, too long, or
    /// shifting the cosine.
    #[test]
    fn retrain_warms_up_its_learning_rate() {
        type Family = crate::classification::ClassificationFamily<'static>;
        let config = ForgetConfig {
            lr: 3e-4,
            epochs: 100,
            ..ForgetConfig::default()
        };
        let lr = |method, epoch| {
            let baseline = FullModel::new(&ForgetConfig {
                method,
                ..config.clone()
            });
            Method::<Family>::lr(&baseline, &config, epoch)
        };
        assert_eq!(lr(MethodKind::Retrain, 0), 1e-6);
        assert!((lr(MethodKind::Retrain, 4) - (1e-6 + 0.8 * (3e-4 - 1e-6))).abs() < 1e-15);
        assert_eq!(lr(MethodKind::Retrain, 5), config.lr_at(5));
        assert_eq!(lr(MethodKind::RetrainFt, 0), config.lr_at(0));
    }

    /// Random labelling minimises CE(R) + CE(F → ŷ) (weight 1) with each ŷ a remaining class,
    /// drawn anew at each step and the same from the same task seed. Catches labels drawn
    /// from the forget classes or all classes, and a draw that never changes.
    #[test]
    fn random_labels_are_remaining_classes_drawn_per_step() {
        let model = tiny_vit();
        let mut method = FullModel::new(&ForgetConfig {
            method: MethodKind::RandomLabels,
            ..ForgetConfig::default()
        });
        let task = |retain: Vec<usize>| Task {
            index: 0,
            forget: vec![7],
            retain,
            old: Vec::new(),
            missing: Vec::new(),
        };
        let draws = |method: &mut FullModel| -> Vec<f64> {
            method
                .relabel
                .begin_task(&task(vec![2, 4, 9]), 3)
                .expect("task");
            (0..40)
                .map(|_| {
                    let pair = Pair {
                        retain: (1.5, 0.0),
                        forget: (2.0, 0.0),
                    };
                    let v = method
                        .loss_of(&FixedObjective, &model, pair)
                        .expect("loss")
                        .values();
                    assert!((v.total - v.retain - v.forget).abs() < 1e-6);
                    v.forget
                })
                .collect()
        };
        let labels = draws(&mut method);
        for class in [2.0, 4.0, 9.0] {
            assert!(labels.contains(&class), "{class} drawn in {labels:?}");
        }
        assert!(labels.iter().all(|l| [2.0, 4.0, 9.0].contains(l)));
        assert_eq!(labels, draws(&mut method), "seeded");
        assert!(method.relabel.begin_task(&task(Vec::new()), 3).is_err());
    }

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<2>>,
        b: Param<Tensor<1>>,
    }

    /// Scores `[1, 5, 3, 2]` and `[4, 0.5]`: the top half over both tensors (5, 4, 3) keeps
    /// its gradients, the rest is zeroed. Catches a threshold per tensor (b would keep 4 and
    /// a would keep 5 and 3 — here the same — so b's 0.5 tells), the mask inverted, or
    /// masked gradients left in place.
    #[test]
    fn the_saliency_mask_keeps_the_top_half_over_all_parameters() {
        let device = Device::default();
        let tensor2 =
            |v: [f32; 4]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [2, 2]), &device);
        let tensor1 =
            |v: [f32; 2]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [2]), &device);
        let model = Two {
            a: Param::from_tensor(tensor2([0.0; 4])),
            b: Param::from_tensor(tensor1([0.0; 2])),
        };
        let mut scores = GradientsParams::new();
        scores.register(model.a.id, tensor2([1.0, 5.0, 3.0, 2.0]));
        scores.register(model.b.id, tensor1([4.0, 0.5]));
        let mask = saliency_mask(&model, &scores, 0.5).expect("mask");
        let mut grads = GradientsParams::new();
        grads.register(model.a.id, tensor2([10.0, 20.0, 30.0, 40.0]));
        grads.register(model.b.id, tensor1([50.0, 60.0]));
        apply_mask(&model, &mut grads, &mask);
        let host = |values: Option<Tensor<2>>| {
            values.expect("grad").try_into_vec_as::<f32>().expect("f32")
        };
        assert_eq!(host(grads.get::<2>(model.a.id)), vec![0.0, 20.0, 30.0, 0.0]);
        let b = grads
            .get::<1>(model.b.id)
            .expect("grad")
            .try_into_vec_as::<f32>()
            .expect("f32");
        assert_eq!(b, vec![50.0, 0.0]);
    }
}
