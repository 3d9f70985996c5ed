//! Forgetting classes in an image classifier (the ViT family): image datasets, batches,
//! classifier directories, pretraining and linear probing, accuracy, the embedded default, and
//! the [`Family`](crate::engine::Family) the engine runs classification tasks on.

mod batch;
mod checkpoint_preprocess;
mod classifier_dir;
pub mod data;
mod embedded;
mod evaluate;
mod forget;
mod pretrain;
mod pretrained_head;
mod probe;

pub use batch::{Batch, make_batch};
pub use checkpoint_preprocess::checkpoint_preprocess;
pub use classifier_dir::{ClassifierDir, ClassifierInfo, SETTINGS_FILE};
pub use embedded::{
    EMBEDDED_PREPROCESS, embedded_config, embedded_dataset, load_or_pretrain, pretrain_from_scratch,
};
pub use evaluate::{class_accuracy, val_accuracy};
pub use forget::{
    ClassificationFamily, ClassifierCriterion, ClassifierObjective, default_bound, run_forgetting,
};
pub use pretrain::{PretrainConfig, pretrain};
pub use pretrained_head::{head_rows, keep_pretrained_head};
pub use probe::{ProbeConfig, linear_probe, load_backbone};
