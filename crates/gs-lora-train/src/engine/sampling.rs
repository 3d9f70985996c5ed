//! Seeds, training subsets and batch order: which samples a task trains on, in which order.

use gs_lora_core::lora::derive_seed;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::method::Group;
use super::schedule::Task;
use crate::config::{ForgetConfig, Replay};
use crate::error::{Result, TrainError};
use crate::protocol::{ClassOrder, PythonRandom};

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
/// a class's samples), drawn as the official code draws them (PROTOCOL §0.3): a replay
/// fraction `r` keeps `floor(n·r)` of a group's `n` samples, uniformly without replacement over
/// the whole group (not per class), for the remaining and the forget classes alike; a
/// stratified fraction keeps `⌈n_c·r⌉` of each class's `n_c`; few-shot keeps `k` samples of
/// every class, and group few-shot `k · #classes` samples over the group (the official COCO
/// draw). A `forget_fraction` `f` keeps `⌈n_c·f⌉` of each forget class's samples instead. The
/// stratified rule keeps at least `min(config.min_replay, n_c)` of each class.
///
/// # Errors
/// [`TrainError::Setting`] when a fraction keeps no sample of a group, or a class has fewer
/// than `k` samples (few-shot).
pub fn task_samples(
    samples_of: impl Fn(usize) -> Vec<usize>,
    task: &Task,
    config: &ForgetConfig,
) -> Result<TaskSamples> {
    Ok(Pair {
        retain: draw(&samples_of, task, config, Group::Retain)?,
        forget: draw(&samples_of, task, config, Group::Forget)?,
    })
}

/// One group's training samples of `task`: the forget classes by `config.forget_fraction` when
/// set, by the replay rule otherwise; each group from its own seeded stream.
fn draw(
    samples_of: impl Fn(usize) -> Vec<usize>,
    task: &Task,
    config: &ForgetConfig,
    group: Group,
) -> Result<Vec<usize>> {
    let (classes, name, stream) = match group {
        Group::Retain => (&task.retain, "remaining", 1),
        Group::Forget => (&task.forget, "forget", 2),
    };
    let (rule, setting) = match (group, config.forget_fraction) {
        (Group::Forget, Some(f)) => (Replay::Stratified(f), "forget_fraction"),
        _ => (config.replay, config.replay.setting()),
    };
    let seed = derive_seed(task_seed(config.seed, task.index), stream);
    subset(
        samples_of,
        classes,
        rule,
        config.min_replay,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
    .map_err(|problem| TrainError::Setting {
        name: setting,
        problem: format!("{problem} (task {}, {name} classes)", task.index),
    })
}

/// The training samples of each of `tasks` (the schedule's, from the first), as
/// [`task_samples`] draws them, except in the official few-shot setting with the official class
/// order (`Replay::FewShot(k)` with `ClassOrder::Python(n)`). There the official code draws
/// from the CPython stream that shuffled the `num_classes` classes (PROTOCOL §0.3), and so do
/// we: per task the forget classes, then the remaining ones, each class in ascending label
/// order `random.sample(its samples, k)`, then one `random.shuffle` of the group's picks (whose
/// order the loader reshuffles; it is drawn to keep the stream in step).
///
/// # Errors
/// As [`task_samples`]; for the official stream, a class with fewer than `k` samples.
pub fn schedule_samples(
    samples_of: impl Fn(usize) -> Vec<usize>,
    tasks: &[Task],
    num_classes: usize,
    config: &ForgetConfig,
) -> Result<Vec<TaskSamples>> {
    let (Replay::FewShot(k), ClassOrder::Python(seed)) = (config.replay, config.class_order) else {
        return tasks
            .iter()
            .map(|task| task_samples(&samples_of, task, config))
            .collect();
    };
    let mut stream = PythonRandom::new(i128::from(seed));
    stream.shuffle(&mut (0..num_classes).collect::<Vec<_>>())?;
    let mut draw_official = |classes: &[usize], task: usize, group: &str| -> Result<Vec<usize>> {
        let mut ascending = classes.to_vec();
        ascending.sort_unstable();
        let mut picks = Vec::with_capacity(k * ascending.len());
        for class in ascending {
            let samples = samples_of(class);
            if samples.len() < k {
                return Err(TrainError::Setting {
                    name: config.replay.setting(),
                    problem: format!(
                        "{} (task {task}, {group} classes)",
                        too_few(k, samples.len(), class)
                    ),
                });
            }
            picks.extend(stream.sample(&samples, k)?);
        }
        stream.shuffle(&mut picks)?;
        picks.sort_unstable();
        picks.dedup();
        Ok(picks)
    };
    tasks
        .iter()
        .map(|task| {
            // Drawn from the official stream even when `forget_fraction` replaces it, to keep
            // the stream in step for the remaining classes.
            let official_forget = draw_official(&task.forget, task.index, "forget")?;
            let retain = draw_official(&task.retain, task.index, "remaining")?;
            let forget = match config.forget_fraction {
                Some(_) => draw(&samples_of, task, config, Group::Forget)?,
                None => official_forget,
            };
            Ok(Pair { retain, forget })
        })
        .collect()
}

/// The samples of `classes` kept for training this task, sorted (a sample of several classes
/// is one sample of the group), the stratified rule at least `min_per_class` of each class;
/// the error says why none or too few could be kept.
fn subset(
    samples_of: impl Fn(usize) -> Vec<usize>,
    classes: &[usize],
    replay: Replay,
    min_per_class: usize,
    rng: &mut ChaCha8Rng,
) -> std::result::Result<Vec<usize>, String> {
    let group = || {
        let mut group: Vec<usize> = classes.iter().flat_map(|&c| samples_of(c)).collect();
        group.sort_unstable();
        group.dedup();
        group
    };
    let mut chosen = match replay {
        Replay::Fraction(fraction) => {
            let mut group = group();
            let keep = (group.len() as f64 * fraction).floor() as usize;
            if keep == 0 {
                return Err(format!(
                    "{fraction} keeps none of {} training samples: floor({0} · {fraction}) = 0",
                    group.len()
                ));
            }
            group.shuffle(rng);
            group.truncate(keep);
            group
        }
        Replay::Stratified(fraction) => {
            let mut chosen = Vec::new();
            for &class in classes {
                let mut samples = samples_of(class);
                // The floor extends the fraction's draw: its images come first, then more.
                let keep = ((samples.len() as f64 * fraction).ceil() as usize).max(min_per_class);
                samples.shuffle(rng);
                chosen.extend_from_slice(&samples[..keep.min(samples.len())]);
            }
            if chosen.is_empty() {
                return Err(format!(
                    "{fraction} keeps none: the classes have no training samples"
                ));
            }
            chosen
        }
        Replay::GroupFewShot(k) => {
            let mut group = group();
            if group.is_empty() {
                return Err("the classes have no training samples".into());
            }
            let want = k * classes.len();
            if group.len() < want {
                // The official fallback, `random.choices`: with replacement, so some samples
                // appear twice (and are trained on twice per epoch).
                let mut drawn: Vec<usize> = (0..want)
                    .map(|_| group[rng.random_range(0..group.len())])
                    .collect();
                drawn.sort_unstable();
                return Ok(drawn);
            }
            group.shuffle(rng);
            group.truncate(want);
            group
        }
        Replay::FewShot(k) => {
            let mut chosen = Vec::with_capacity(k * classes.len());
            for &class in classes {
                let mut samples = samples_of(class);
                if samples.len() < k {
                    return Err(too_few(k, samples.len(), class));
                }
                samples.shuffle(rng);
                chosen.extend_from_slice(&samples[..k]);
            }
            chosen
        }
    };
    chosen.sort_unstable();
    chosen.dedup();
    Ok(chosen)
}

/// Why `k` samples of `class` cannot be drawn from its `found` (the official code raises too).
fn too_few(k: usize, found: usize, class: usize) -> String {
    format!("{k} is more than the {found} training samples of class {class}")
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
            missing: Vec::new(),
        }
    }

    /// `replay` draws both groups: the forget classes by the replay rule too.
    fn config(replay: Replay) -> ForgetConfig {
        ForgetConfig {
            replay,
            forget_fraction: None,
            min_replay: 0,
            ..ForgetConfig::default()
        }
    }

    /// A fraction keeps `floor(n·r)` of each group's images, drawn over the whole group (some
    /// classes get more than their share, some fewer), forget classes included; few-shot
    /// keeps `k` of each class. Catches a ceiling instead of the floor, a draw per class
    /// (stratified), the forget classes kept whole, and a few-shot count over the group.
    #[test]
    fn subsets_follow_the_official_draw() {
        let per_class =
            |indices: &[usize], class: usize| indices.iter().filter(|&&i| i / 10 == class).count();
        // 5 + 6 + 7 = 18 remaining images, 8 forget images.
        let TaskSamples { retain, forget } =
            task_samples(images_of, &task(), &config(Replay::Fraction(0.55))).expect("subsets");
        assert_eq!(retain.len(), 9, "floor(18 · 0.55) = 9");
        assert_eq!(forget.len(), 4, "floor(8 · 0.55) = 4");
        for index in retain.iter().chain(&forget) {
            assert!(
                images_of(index / 10).contains(index),
                "{index} is its class's image"
            );
        }
        // Over seeds, the draw is not stratified: the per-class counts vary.
        let counts: std::collections::HashSet<[usize; 3]> = (0..20)
            .map(|seed| {
                let subsets = task_samples(
                    images_of,
                    &task(),
                    &ForgetConfig {
                        seed,
                        ..config(Replay::Fraction(0.55))
                    },
                )
                .expect("subsets");
                [0, 1, 2].map(|c| per_class(&subsets.retain, c))
            })
            .collect();
        assert!(
            counts.len() > 3,
            "per-class counts over 20 seeds: {counts:?}"
        );
        let few_shot = |k| {
            let task = Task {
                forget: vec![3],
                ..task()
            };
            task_samples(images_of, &task, &config(Replay::FewShot(k)))
        };
        let TaskSamples { retain, forget } = few_shot(2).expect("subsets");
        assert_eq!([0, 1, 2, 3].map(|c| per_class(&retain, c)), [2, 2, 2, 0]);
        assert_eq!(per_class(&forget, 3), 2);
        // Same seed, same subsets; another task, other subsets.
        assert_eq!(
            few_shot(2).expect("again"),
            Pair {
                retain: retain.clone(),
                forget
            }
        );
        let other = Task {
            index: 1,
            forget: vec![3],
            ..task()
        };
        let other_retain = task_samples(images_of, &other, &config(Replay::FewShot(2)))
            .expect("subsets")
            .retain;
        assert_ne!(other_retain, retain);
    }

    /// A stratified fraction keeps `⌈n_c·r⌉` of every class, at least one even where the
    /// official floor over the group leaves classes out. Catches a floor, a draw over the group,
    /// and a class without samples counted as an error while its group has others.
    #[test]
    fn stratified_subsets_keep_every_class() {
        let per_class =
            |indices: &[usize], class: usize| indices.iter().filter(|&&i| i / 10 == class).count();
        let draw = |fraction, seed| {
            task_samples(
                images_of,
                &task(),
                &ForgetConfig {
                    seed,
                    ..config(Replay::Stratified(fraction))
                },
            )
            .expect("subsets")
        };
        for seed in 0..5 {
            // Classes 0..4 have 5, 6, 7, 8 and 0 images.
            let small = draw(0.1, seed);
            assert_eq!([0, 1, 2].map(|c| per_class(&small.retain, c)), [1, 1, 1]);
            assert_eq!([3, 4].map(|c| per_class(&small.forget, c)), [1, 0]);
            let large = draw(0.55, seed);
            assert_eq!(
                [0, 1, 2].map(|c| per_class(&large.retain, c)),
                [3, 4, 4],
                "⌈2.75⌉, ⌈3.3⌉, ⌈3.85⌉"
            );
            for index in large.retain.iter().chain(&large.forget) {
                assert!(images_of(index / 10).contains(index), "{index}");
            }
            assert_eq!(draw(0.55, seed), large, "same seed, same subsets");
        }
        assert_ne!(draw(0.55, 0), draw(0.55, 1), "another seed, other images");
        let empty = Task {
            forget: vec![4],
            ..task()
        };
        let error = task_samples(images_of, &empty, &config(Replay::Stratified(0.5)))
            .expect_err("class 4 has no images");
        assert!(error.to_string().contains("replay.stratified"), "{error}");
    }

    /// The floor raises the stratified rule's count to `min(min_replay, n_c)` per class and
    /// extends its draw (the same images first); the official fraction and few-shot draws
    /// ignore it. Catches a floor that is ignored, one applied past a class's images, a floor
    /// drawn from another stream, and a floor that changes the official draws.
    #[test]
    fn the_floor_extends_the_stratified_draw() {
        let per_class =
            |indices: &[usize], class: usize| indices.iter().filter(|&&i| i / 10 == class).count();
        let with_floor = |replay, floor, forget_fraction| ForgetConfig {
            min_replay: floor,
            forget_fraction,
            ..config(replay)
        };
        let draw = |config: &ForgetConfig| task_samples(images_of, &task(), config).expect("draw");
        for seed in 0..5 {
            let plain = draw(&ForgetConfig {
                seed,
                ..config(Replay::Stratified(0.1))
            });
            // Classes 0..4 have 5, 6, 7, 8 and 0 images; ⌈0.1·n_c⌉ = 1 for each.
            let floored = draw(&ForgetConfig {
                seed,
                ..with_floor(Replay::Stratified(0.1), 4, None)
            });
            assert_eq!([0, 1, 2].map(|c| per_class(&floored.retain, c)), [4, 4, 4]);
            assert_eq!([3, 4].map(|c| per_class(&floored.forget, c)), [4, 0]);
            for index in plain.retain.iter().chain(&plain.forget) {
                assert!(
                    floored.retain.contains(index) || floored.forget.contains(index),
                    "seed {seed}: {index} of the fraction's draw is kept"
                );
            }
            let past = draw(&ForgetConfig {
                seed,
                ..with_floor(Replay::Stratified(0.1), 6, Some(0.1))
            });
            assert_eq!([0, 1, 2].map(|c| per_class(&past.retain, c)), [5, 6, 6]);
            assert_eq!(per_class(&past.forget, 3), 6, "the forget fraction's floor");
        }
        for replay in [Replay::Fraction(0.55), Replay::FewShot(2)] {
            let task = Task {
                forget: vec![3],
                ..task()
            };
            let draw =
                |config: &ForgetConfig| task_samples(images_of, &task, config).expect("draw");
            assert_eq!(
                draw(&with_floor(replay, 4, None)),
                draw(&config(replay)),
                "{replay:?}"
            );
        }
    }

    /// A forget fraction draws the forget classes per class, `⌈n_c·f⌉` of each, whatever the
    /// replay rule, and leaves the remaining classes' draw as it was (the same stream); `f`
    /// outside (0, 1] is refused. Catches the replay rule still applied to the forget classes,
    /// the fraction applied to the remaining ones, and a changed remaining draw.
    #[test]
    fn a_forget_fraction_draws_the_forget_classes_alone() {
        let per_class =
            |indices: &[usize], class: usize| indices.iter().filter(|&&i| i / 10 == class).count();
        let task = Task {
            forget: vec![3],
            ..task()
        };
        for replay in [Replay::Fraction(0.5), Replay::FewShot(2)] {
            let official = task_samples(images_of, &task, &config(replay)).expect("subsets");
            let with = |f| ForgetConfig {
                forget_fraction: Some(f),
                ..config(replay)
            };
            let all = task_samples(images_of, &task, &with(1.0)).expect("subsets");
            assert_eq!(all.retain, official.retain, "{replay:?}");
            assert_eq!(all.forget, images_of(3), "every image of class 3");
            let half = task_samples(images_of, &task, &with(0.3)).expect("subsets");
            assert_eq!(per_class(&half.forget, 3), 3, "⌈8 · 0.3⌉");
        }
        for f in [0.0, 1.5, f64::NAN] {
            let error = ForgetConfig {
                forget_fraction: Some(f),
                ..ForgetConfig::default()
            }
            .validate()
            .expect_err("out of range");
            assert!(error.to_string().contains("forget_fraction"), "{error}");
        }
    }

    /// Group few-shot keeps `k · #classes` samples drawn over the whole group, so per-class
    /// counts vary with the seed, and draws them with replacement from a smaller group (the
    /// official `random.choices` fallback). Catches `k` per class, and a short group refused or
    /// cut short.
    #[test]
    fn group_few_shot_draws_k_per_class_over_the_group() {
        let per_class =
            |indices: &[usize], class: usize| indices.iter().filter(|&&i| i / 10 == class).count();
        let draw = |k, seed| {
            task_samples(
                images_of,
                &task(),
                &ForgetConfig {
                    seed,
                    ..config(Replay::GroupFewShot(k))
                },
            )
            .expect("subsets")
        };
        let counts: std::collections::HashSet<[usize; 3]> = (0..20)
            .map(|seed| {
                let subsets = draw(3, seed);
                // 3 classes × 3 of 18 remaining images; 2 classes × 3 of 8 forget images.
                assert_eq!((subsets.retain.len(), subsets.forget.len()), (9, 6));
                [0, 1, 2].map(|c| per_class(&subsets.retain, c))
            })
            .collect();
        assert!(
            counts.len() > 3,
            "per-class counts over 20 seeds: {counts:?}"
        );
        // 10 asked of 8 forget images: drawn with replacement, so some twice.
        let short = draw(5, 0);
        assert_eq!(short.forget.len(), 10);
        let distinct: std::collections::BTreeSet<usize> = short.forget.iter().copied().collect();
        assert!(distinct.len() < 10, "{:?}", short.forget);
        assert!(short.forget.iter().all(|i| images_of(i / 10).contains(i)));
    }

    /// A subset that would be empty, or a class short of `k` samples, is an error naming the
    /// setting, the task, the group and the counts (the official code raises on the second).
    #[test]
    fn subsets_that_cannot_be_drawn_are_refused() {
        let error = task_samples(images_of, &task(), &config(Replay::Fraction(0.1)))
            .expect_err("floor(8 · 0.1) = 0 forget images");
        let text = error.to_string();
        assert!(
            text.contains("replay.fraction")
                && text.contains("keeps none of 8")
                && text.contains("forget"),
            "{text}"
        );
        let error = task_samples(images_of, &task(), &config(Replay::FewShot(6)))
            .expect_err("class 0 has 5 images");
        let text = error.to_string();
        assert!(
            text.contains("replay.few_shot") && text.contains("the 5 training samples of class 0"),
            "{text}"
        );
    }
}
