//! The sequence of forgetting tasks: which classes each task erases and keeps.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// One forgetting task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// 0-based position in the sequence.
    pub index: usize,
    /// Classes erased by this task (`F_t`).
    pub forget: Vec<usize>,
    /// Classes that must keep working (`R_t`).
    pub retain: Vec<usize>,
    /// Classes erased by earlier tasks (`O_t`).
    pub old: Vec<usize>,
}

/// The class order and the tasks cut from it.
///
/// Classes are shuffled by the seed; task `i` of `N` forgets
/// `order[C − (i+1)k .. C − ik]` and keeps `order[0 .. C − (i+1)k]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSchedule {
    /// The shuffled classes.
    pub order: Vec<usize>,
    /// The tasks, in order.
    pub tasks: Vec<Task>,
}

impl TaskSchedule {
    /// `num_tasks` tasks of `forget_per_task` classes each out of `num_classes`, in the class
    /// order drawn from `seed` (ChaCha8).
    ///
    /// # Errors
    /// As [`TaskSchedule::from_order`].
    pub fn new(
        num_classes: usize,
        num_tasks: usize,
        forget_per_task: usize,
        seed: u64,
    ) -> Result<Self> {
        let mut order: Vec<usize> = (0..num_classes).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        Self::from_order(order, num_tasks, forget_per_task)
    }

    /// `num_tasks` tasks of `forget_per_task` classes each cut from the class order `order`
    /// (a permutation of `0..C`), as the official code cuts its tasks.
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] for zero tasks or classes per task, or when the tasks
    /// would forget every class (at least one must remain).
    pub fn from_order(order: Vec<usize>, num_tasks: usize, forget_per_task: usize) -> Result<Self> {
        let num_classes = order.len();
        if num_tasks == 0 {
            return Err(TrainError::Setting {
                name: "tasks",
                problem: "must be at least 1, found 0".into(),
            });
        }
        if forget_per_task == 0 {
            return Err(TrainError::Setting {
                name: "forget_per_task",
                problem: "must be at least 1, found 0".into(),
            });
        }
        let forgotten = num_tasks.saturating_mul(forget_per_task);
        if forgotten >= num_classes {
            return Err(TrainError::InvalidSetting(format!(
                "{num_tasks} tasks × {forget_per_task} classes = {forgotten} forgotten classes, \
                 but the model has {num_classes}; at least one class must remain"
            )));
        }
        let tasks = (0..num_tasks)
            .map(|i| {
                let end = num_classes - i * forget_per_task;
                let start = end - forget_per_task;
                Task {
                    index: i,
                    forget: order[start..end].to_vec(),
                    retain: order[..start].to_vec(),
                    old: order[end..].to_vec(),
                }
            })
            .collect();
        Ok(Self { order, tasks })
    }

    /// The same schedule over the model labels `labels` (class `i` becomes `labels[i]`): for
    /// data that uses some of a model's labels only, such as COCO's 80 categories of a
    /// 91-label detector.
    ///
    /// # Errors
    /// Fewer labels than the schedule's classes.
    pub fn relabelled(self, labels: &[usize]) -> Result<Self> {
        if labels.len() < self.order.len() {
            return Err(TrainError::InvalidSetting(format!(
                "{} labels for a schedule of {} classes",
                labels.len(),
                self.order.len()
            )));
        }
        let map = |classes: Vec<usize>| classes.into_iter().map(|c| labels[c]).collect();
        Ok(Self {
            order: map(self.order),
            tasks: self
                .tasks
                .into_iter()
                .map(|task| Task {
                    index: task.index,
                    forget: map(task.forget),
                    retain: map(task.retain),
                    old: map(task.old),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches a relabelling that maps one list but not another, or maps by position in the
    /// order instead of by class.
    #[test]
    fn relabelling_maps_every_list_through_the_labels() {
        let schedule = TaskSchedule::new(5, 2, 2, 3).expect("valid");
        let labels = [10, 11, 13, 17, 19];
        let relabelled = schedule.clone().relabelled(&labels).expect("enough labels");
        let map = |classes: &[usize]| classes.iter().map(|&c| labels[c]).collect::<Vec<_>>();
        assert_eq!(relabelled.order, map(&schedule.order));
        for (old, new) in schedule.tasks.iter().zip(&relabelled.tasks) {
            assert_eq!(new.index, old.index);
            assert_eq!(new.forget, map(&old.forget));
            assert_eq!(new.retain, map(&old.retain));
            assert_eq!(new.old, map(&old.old));
        }
        let err = schedule
            .relabelled(&labels[..4])
            .expect_err("too few labels");
        assert!(
            err.to_string().contains("4 labels for a schedule of 5"),
            "{err}"
        );
    }
}
