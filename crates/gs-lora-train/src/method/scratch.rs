//! A model's parameters drawn afresh, as a model trained from scratch starts (timm's ViT
//! initialisation): normalisation scales and layer scales 1, biases, shifts and running means
//! 0, running variances 1, every other tensor (linear and convolution weights, embeddings,
//! tokens, the head) `N(0, 0.02²)`. The adapters are left to [`reset_adapters`].
//!
//! [`reset_adapters`]: gs_lora_core::reset_adapters

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// The standard deviation of the weights drawn.
pub const INIT_STD: f64 = 0.02;

/// `model` with every parameter but the LoRA factors drawn afresh from a stream seeded with
/// `seed` (on the host, so the draw does not depend on what else uses the backend's stream).
pub fn reinitialise<M: Module>(model: M, seed: u64) -> M {
    struct Fresh {
        names: Vec<String>,
        holders: Vec<String>,
        rng: ChaCha8Rng,
    }
    impl Fresh {
        /// `n` draws of `N(0, INIT_STD²)` (Box–Muller).
        fn normal(&mut self, n: usize) -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let u: f64 = 1.0 - self.rng.random::<f64>();
                    let v: f64 = self.rng.random::<f64>();
                    let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                    (INIT_STD * z) as f32
                })
                .collect()
        }
    }
    impl ModuleMapper for Fresh {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.names.push(name.to_string());
            self.holders.push(container_type.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.names.pop();
            self.holders.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let field = self.names.last().map_or("", String::as_str);
            let holder = self.holders.last().map_or("", String::as_str);
            if matches!(field, "lora_a" | "lora_b") {
                return param;
            }
            let norm = holder.contains("Norm");
            let one = matches!(field, "gamma" | "running_var" | "ls1" | "ls2")
                || (norm && field == "weight");
            let zero = matches!(field, "beta" | "bias" | "running_mean");
            let drawn = (!one && !zero).then(|| self.normal(param.lazy_shape().num_elements()));
            param.map(|value| match (one, drawn) {
                (true, _) => value.ones_like(),
                (_, Some(drawn)) => {
                    let shape = value.shape();
                    Tensor::from_data(TensorData::new(drawn, shape), &value.device())
                }
                _ => value.zeros_like(),
            })
        }
    }
    model.map(&mut Fresh {
        names: Vec::new(),
        holders: Vec::new(),
        rng: ChaCha8Rng::seed_from_u64(seed),
    })
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use gs_lora_core::LoraConfig;
    use gs_lora_models::VisionTransformer;
    use gs_lora_models::vit::VitConfig;
    use gs_lora_models::weights::SeededInit;

    use super::*;
    use crate::classification::embedded_config;
    use crate::engine::path_params;

    /// A tiny ViT drawn afresh: layer-norm scales 1 and shifts 0, biases 0, weights with mean
    /// about 0 and spread about 0.02, nothing of the original weights left; the same seed
    /// draws the same model. Catches a norm scale drawn at random (the network's activations
    /// then vanish), weights left as they were, or a draw that ignores the seed.
    #[test]
    fn a_fresh_model_keeps_nothing_of_the_old_one() {
        let config = VitConfig {
            hidden_size: 16,
            depth: 1,
            num_heads: 2,
            mlp_hidden: 32,
            ..embedded_config(8, 3)
        };
        let model = VisionTransformer::load(
            &config,
            &mut SeededInit::new(0),
            &LoraConfig::new().with_rank(2),
            0,
            &Device::default(),
        )
        .expect("model");
        let values = |model: &VisionTransformer| -> Vec<(String, Vec<f32>)> {
            path_params(model)
                .into_iter()
                .map(|p| (p.path, p.value.try_into_vec_as::<f32>().expect("f32")))
                .collect()
        };
        let before = values(&model);
        let fresh = values(&reinitialise(model.clone(), 3));
        assert_eq!(fresh, values(&reinitialise(model.clone(), 3)), "seeded");
        let mut weights = Vec::new();
        for ((path, old), (_, new)) in before.iter().zip(&fresh) {
            if path.ends_with("lora_a") || path.ends_with("lora_b") {
                assert_eq!(old, new, "{path}: the adapters are not drawn here");
            } else if path.contains("norm") && path.ends_with("gamma") {
                assert!(new.iter().all(|v| *v == 1.0), "{path}");
            } else if path.ends_with("beta") || path.ends_with("bias") {
                assert!(new.iter().all(|v| *v == 0.0), "{path}");
            } else {
                assert_ne!(old, new, "{path} drawn afresh");
                weights.extend(new.iter().map(|v| f64::from(*v)));
            }
        }
        let n = weights.len() as f64;
        let mean = weights.iter().sum::<f64>() / n;
        let std = (weights.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            mean.abs() < 0.005 && (std - INIT_STD).abs() < 0.004,
            "{mean} {std}"
        );
    }
}
