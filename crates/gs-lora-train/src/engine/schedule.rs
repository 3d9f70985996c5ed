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
    /// Classes that must keep working but are never trained on (the official "open" setting's
    /// missing classes): measured only, empty outside that setting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<usize>,
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
                    missing: Vec::new(),
                }
            })
            .collect();
        Ok(Self { order, tasks })
    }

    /// The missing-class setting (PROTOCOL §0.2, open continual): the first `count` classes of
    /// the order move from every task's remaining classes to its missing classes, which no task
    /// trains on (no replay) and every task measures. `count = 0` changes nothing.
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] when a task would keep no remaining class to train on.
    pub fn with_missing(mut self, count: usize) -> Result<Self> {
        for task in &mut self.tasks {
            if count >= task.retain.len() {
                return Err(TrainError::InvalidSetting(format!(
                    "{count} missing classes leave task {} no remaining class to train on \
                     (it keeps {}); use fewer missing classes or fewer tasks",
                    task.index,
                    task.retain.len()
                )));
            }
            task.missing = task.retain.drain(..count).collect();
        }
        Ok(self)
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
                    missing: map(task.missing),
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
        let schedule = TaskSchedule::new(5, 2, 1, 3)
            .and_then(|s| s.with_missing(1))
            .expect("valid");
        let labels = [10, 11, 13, 17, 19];
        let relabelled = schedule.clone().relabelled(&labels).expect("enough labels");
        let map = |classes: &[usize]| classes.iter().map(|&c| labels[c]).collect::<Vec<_>>();
        assert_eq!(relabelled.order, map(&schedule.order));
        for (old, new) in schedule.tasks.iter().zip(&relabelled.tasks) {
            assert_eq!(new.index, old.index);
            assert_eq!(new.forget, map(&old.forget));
            assert_eq!(new.retain, map(&old.retain));
            assert_eq!(new.old, map(&old.old));
            assert_eq!(new.missing, map(&old.missing));
        }
        let err = schedule
            .relabelled(&labels[..4])
            .expect_err("too few labels");
        assert!(
            err.to_string().contains("4 labels for a schedule of 5"),
            "{err}"
        );
    }

    /// The official open continual layout (PROTOCOL §0.2: R_t = order[o : N − tK], missing =
    /// order[0 : o]) on a hand-written order. Catches missing classes left in the remaining
    /// ones (they would be replayed), taken from the end of the order, or differing per task.
    #[test]
    fn missing_classes_are_the_first_of_the_order_in_every_task() {
        let order = vec![7, 3, 9, 0, 5, 1, 8, 2, 6, 4];
        let schedule = TaskSchedule::from_order(order, 3, 2)
            .and_then(|s| s.with_missing(2))
            .expect("valid");
        let expected = [
            (vec![6, 4], vec![9, 0, 5, 1, 8, 2], vec![]),
            (vec![8, 2], vec![9, 0, 5, 1], vec![6, 4]),
            (vec![5, 1], vec![9, 0], vec![8, 2, 6, 4]),
        ];
        for (task, (forget, retain, old)) in schedule.tasks.iter().zip(expected) {
            assert_eq!(task.missing, vec![7, 3], "task {}", task.index);
            assert_eq!(
                (&task.forget, &task.retain, &task.old),
                (&forget, &retain, &old)
            );
        }
        let err = TaskSchedule::from_order((0..10).collect(), 3, 2)
            .and_then(|s| s.with_missing(4))
            .expect_err("task 2 keeps 4 classes");
        assert!(
            err.to_string().contains("leave task 2 no remaining class"),
            "{err}"
        );
        let plain = TaskSchedule::new(10, 3, 2, 0).expect("valid");
        assert_eq!(plain.clone().with_missing(0).expect("none"), plain);
    }
}
