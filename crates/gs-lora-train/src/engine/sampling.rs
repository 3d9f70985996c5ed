//! Seeds, training subsets and batch order: which samples a task trains on, in which order.

use gs_lora_core::lora::derive_seed;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::schedule::Task;
use crate::config::{ForgetConfig, Replay};

/// A remaining-class and a forget-class value: samples, batches, criteria.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair<T> {
    /// For the classes that remain.
    pub retain: T,
    /// For the classes the task erases.
    pub forget: T,
}

/// The training samples of a task.
pub type TaskSamples = Pair<Vec<usize>>;

/// The seed of task `task` in a run seeded with `seed` (adapter initialisation, subsets, batch
/// order).
pub fn task_seed(seed: u64, task: usize) -> u64 {
    derive_seed(seed, 1000 + task as u64)
}

/// The remaining-class and forget-class training samples of `task` (`samples_of(class)` lists
/// a class's samples): the replay subset of the remaining classes, and every forget-class
/// sample (or `k` per class, few-shot).
pub fn task_samples(
    samples_of: impl Fn(usize) -> Vec<usize>,
    task: &Task,
    config: &ForgetConfig,
) -> TaskSamples {
    let seed = task_seed(config.seed, task.index);
    Pair {
        retain: subset(
            &samples_of,
            &task.retain,
            config.replay,
            false,
            derive_seed(seed, 1),
        ),
        forget: subset(
            &samples_of,
            &task.forget,
            config.replay,
            true,
            derive_seed(seed, 2),
        ),
    }
}

/// The samples of each class of `classes` kept for training this task (a sample of several
/// classes is kept once); `full` keeps every sample unless few-shot.
fn subset(
    samples_of: impl Fn(usize) -> Vec<usize>,
    classes: &[usize],
    replay: Replay,
    full: bool,
    seed: u64,
) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = Vec::new();
    for &class in classes {
        let mut indices = samples_of(class);
        indices.shuffle(&mut rng);
        let keep = match replay {
            Replay::FewShot(k) => k.min(indices.len()),
            Replay::Fraction(_) if full => indices.len(),
            Replay::Fraction(f) => ((indices.len() as f64 * f).ceil() as usize).min(indices.len()),
        };
        chosen.extend_from_slice(&indices[..keep]);
    }
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// `indices` shuffled with `seed` and cut into batches of at most `batch_size`.
pub fn shuffled_batches(indices: &[usize], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order = indices.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class `c` owns images `10c .. 10c + 5 + c` (class 4 has none).
    fn images_of(class: usize) -> Vec<usize> {
        match class {
            4 => Vec::new(),
            c => (10 * c..10 * c + 5 + c).collect(),
        }
    }

    fn task() -> Task {
        Task {
            index: 0,
            forget: vec![3, 4],
            retain: vec![0, 1, 2],
            old: Vec::new(),
        }
    }

    /// Subset sizes per replay setting: a rounded-up fraction of each remaining class and
    /// every forget image, or `k` of each. Catches a floor instead of a ceiling, the fraction
    /// applied to the forget classes too, a few-shot count taken over the group instead of
    /// per class, and the old panic on a class without images.
    #[test]
    fn subsets_take_the_replay_share_of_each_class() {
        let config = |replay| ForgetConfig {
            replay,
            ..ForgetConfig::default()
        };
        let TaskSamples { retain, forget } =
            task_samples(images_of, &task(), &config(Replay::Fraction(0.5)));
        let per_class =
            |indices: &[usize], class: usize| indices.iter().filter(|&&i| i / 10 == class).count();
        assert_eq!(
            [0, 1, 2].map(|c| per_class(&retain, c)),
            [3, 3, 4],
            "ceil(5/2), ceil(6/2), ceil(7/2)"
        );
        assert_eq!(forget, images_of(3), "every forget image");
        let TaskSamples { retain, forget } =
            task_samples(images_of, &task(), &config(Replay::FewShot(2)));
        assert_eq!([0, 1, 2, 3].map(|c| per_class(&retain, c)), [2, 2, 2, 0]);
        assert_eq!(per_class(&forget, 3), 2);
        for index in retain.iter().chain(&forget) {
            assert!(
                images_of(index / 10).contains(index),
                "{index} is its class's image"
            );
        }
        // Same seed, same subsets; another task, other subsets.
        let again = task_samples(images_of, &task(), &config(Replay::FewShot(2)));
        assert_eq!(
            again,
            Pair {
                retain: retain.clone(),
                forget
            }
        );
        let other = Task { index: 1, ..task() };
        let other_retain = task_samples(images_of, &other, &config(Replay::FewShot(2))).retain;
        assert_ne!(other_retain, retain);
    }
}
