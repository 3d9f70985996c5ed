//! `gs-lora eval`: a model directory's accuracy per class group.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use gs_lora_core::LoraConfig;
use gs_lora_train::classification::ClassifierDir;
use gs_lora_train::classification::class_accuracy;

use super::{CliError, DataArgs, DeviceArgs, model_load_options, open_dataset};

/// The flags of `gs-lora eval` (its help is on [`Command`](super::Command)).
#[derive(Debug, Args)]
pub struct EvalCommand {
    /// The dataset.
    #[arg(long, value_name = "D")]
    data: PathBuf,
    /// The model directory.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The split measured.
    #[arg(long, value_enum, default_value_t = Split::Val)]
    split: Split,
    /// Every class's accuracy too.
    #[arg(long)]
    per_class: bool,
    /// Where the misclassified images went: for a forgetting checkpoint, how many of the
    /// remaining classes' images are taken for a forgotten class and how many for another
    /// remaining one; then one line per (class, predicted class) pair, most images first.
    #[arg(long)]
    mistakes: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed of anything random in loading the model (nothing, for a saved classifier).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    data_args: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// A split of a dataset.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Split {
    /// The training images (every one, not only a run's replay subset): with `val`, how far
    /// forgetting reaches beyond the images the forgetting term saw.
    Train,
    Val,
    Test,
}

impl EvalCommand {
    pub(super) fn run(self) -> Result<(), CliError> {
        let device = self.device.device()?;
        let model_dir = ClassifierDir::new(&self.model);
        let info = model_dir.info()?;
        let options = self.data_args.options(model_load_options(&info));

        let dataset = open_dataset(&self.data, &options)?;
        info.check_data(&dataset)?;
        let (name, set) = match self.split {
            Split::Train => ("train", &dataset.train),
            Split::Val => ("val", &dataset.val),
            Split::Test => ("test", &dataset.test),
        };
        if set.is_empty() {
            return Err(CliError::Usage(format!(
                "the {name} split of {} is empty",
                self.data.display()
            )));
        }
        let model = model_dir.load(&LoraConfig::new(), self.seed, &device)?;
        let accuracy = class_accuracy(
            &model,
            set,
            dataset.num_classes(),
            &info.preprocess,
            self.batch_size,
            false,
            &device,
        )?;
        let all: Vec<usize> = (0..dataset.num_classes()).collect();
        let remaining: Vec<usize> = all
            .iter()
            .copied()
            .filter(|c| !info.forgotten.contains(c))
            .collect();
        let show = |name: &str, classes: &[usize]| match accuracy.accuracy(classes) {
            Some(value) => println!("{name:<10} {value:6.2}%  ({} classes)", classes.len()),
            None => println!("{name:<10}      -   (no images)"),
        };
        println!("{name} split of {}:", self.data.display());
        show("all", &all);
        if !info.forgotten.is_empty() {
            show("forgotten", &info.forgotten);
            show("remaining", &remaining);
        }
        if self.per_class {
            for (class, name) in dataset.class_names.iter().enumerate() {
                show(name, &[class]);
            }
        }
        if self.mistakes {
            if !info.forgotten.is_empty() {
                let remaining_images = accuracy.images(&remaining);
                println!(
                    "remaining images: {remaining_images}, {} taken for a forgotten class, {} for \
                     another remaining class",
                    accuracy.predicted_as(&remaining, &info.forgotten),
                    accuracy.predicted_as(&remaining, &remaining) - accuracy.correct(&remaining),
                );
            }
            let name = |class: usize| dataset.class_names[class].as_str();
            println!("images  class -> predicted");
            for (class, predicted, images) in accuracy.mistakes() {
                println!("{images:6}  {} -> {}", name(class), name(predicted));
            }
        }
        Ok(())
    }
}
