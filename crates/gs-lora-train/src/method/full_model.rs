//! Baselines that train every parameter but the head, as the official baselines do (PROTOCOL
//! §3, §4: which parameters is the family's [`Family::full_model_params`]):
//!
//! - fine-tuning with GS-LoRA's losses, `L = CE(R) + β · relu(BND − CE(F))`: what training
//!   the whole model instead of low-rank adapters changes;
//! - NegGrad+ (Kurmanji et al., NeurIPS 2023), `L = CE(R) − β · CE(F)`: descent on the
//!   remaining classes, unbounded ascent on the forget classes.
//!
//! The model's adapters are reset at the start of a task and merged at its end, as with the
//! adapter methods, but never trained: they stay zero, so the model is its base weights.

use burn::module::{Module, ParamGroup, ParamId};
use gs_lora_core::{LoraInit, merge_adapters, reset_adapters};

use crate::config::{ForgetConfig, MethodKind};
use crate::engine::{
    AdapterGroups, Criterion, Family, LossTerms, LossWeights, Method, Objective, Pair, Task,
    TaskSamples,
};
use crate::error::Result;

/// A full-model baseline with the weights of a run's config.
#[derive(Debug, Clone)]
pub struct FullModel {
    /// `β` per task, `BND`, and which loss ([`MethodKind::FineTune`] or
    /// [`MethodKind::NegGradPlus`]).
    config: ForgetConfig,
    /// The task running now.
    task: usize,
    /// The parameters trained in the running task.
    trainable: Vec<ParamId>,
}

impl FullModel {
    /// The baseline `config.method` with the weights of `config`.
    pub fn new(config: &ForgetConfig) -> Self {
        Self {
            config: config.clone(),
            task: 0,
            trainable: Vec::new(),
        }
    }

    /// The loss of one step on a remaining and a forget batch of `objective`'s family.
    ///
    /// # Errors
    /// A failing forward pass or loss.
    pub fn loss_of<O: Objective>(
        &self,
        objective: &O,
        model: &O::Model,
        batches: Pair<O::Batch>,
    ) -> Result<LossTerms> {
        let retain = objective.criterion(model, batches.retain)?.loss()?;
        let forget = objective.criterion(model, batches.forget)?;
        let beta = self.config.beta_for(self.task);
        let (forget, beta) = match self.config.method {
            MethodKind::NegGradPlus => (forget.loss()?, -beta),
            _ => (
                forget.bounded_loss(self.config.bnd, self.config.bnd_per_sample)?,
                beta,
            ),
        };
        let lasso = retain.zeros_like();
        let weights = LossWeights {
            beta,
            group_lasso: 0.0,
        };
        Ok(LossTerms::new(retain, forget, lasso, None, weights))
    }
}

impl<F: Family> Method<F> for FullModel {
    fn begin_task(
        &mut self,
        family: &F,
        model: &mut F::Model,
        task: &Task,
        _: &TaskSamples,
        seed: u64,
    ) -> Result<()> {
        self.task = task.index;
        reset_adapters(model, LoraInit::for_task(task.index), seed)?;
        self.trainable = family.full_model_params(model);
        let group = ParamGroup::from_ids(self.trainable.clone());
        *model = model.clone().unfreeze_group(group);
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

    fn after_step(&mut self, _: &mut F::Model, _: f64, _: usize) -> Result<()> {
        Ok(())
    }

    fn end_task(&mut self, model: &mut F::Model) -> Result<AdapterGroups> {
        merge_adapters(model)?;
        *model = model.clone().no_grad();
        self.trainable.clear();
        Ok(AdapterGroups::default())
    }
}

#[cfg(test)]
mod tests {
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

        fn bounded_loss(&self, _: Option<f64>, _: bool) -> Result<Tensor<1>> {
            Ok(value(self.bounded))
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

    /// With retain CE 1.5, forget CE 2 and forget bounded loss 0.25 at β 0.3: fine-tuning
    /// minimises 1.5 + 0.3·0.25, NegGrad+ 1.5 − 0.3·2 (ascent on the forget CE), neither has
    /// a lasso term. Catches the ascent's sign, and NegGrad+ reading the bounded loss.
    #[test]
    fn fine_tuning_bounds_the_forget_loss_and_neg_grad_ascends_it() {
        let device = Device::default();
        let config = VitConfig {
            hidden_size: 8,
            depth: 1,
            num_heads: 2,
            mlp_hidden: 16,
            ..embedded_config(8, 3)
        };
        let lora = LoraConfig::new().with_rank(2);
        let model = VisionTransformer::load(&config, &mut SeededInit::new(0), &lora, 0, &device)
            .expect("model");
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
            assert_eq!(values.lasso, 0.0);
            (values.total, values.forget)
        };
        let (tune, tune_forget) = total(MethodKind::FineTune);
        assert!((tune - (1.5 + 0.3 * 0.25)).abs() < 1e-6, "{tune}");
        assert!((tune_forget - 0.25).abs() < 1e-6);
        let (neg, neg_forget) = total(MethodKind::NegGradPlus);
        assert!((neg - (1.5 - 0.3 * 2.0)).abs() < 1e-6, "{neg}");
        assert!((neg_forget - 2.0).abs() < 1e-6);
    }
}
