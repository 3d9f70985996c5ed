//! `gs-lora eval`: a model directory's accuracy per class group.

use gs_lora_core::LoraConfig;
use gs_lora_train::classification::ClassifierDir;
use gs_lora_train::classification::class_accuracy;
use gs_lora_train::classification::data::LoadOptions;

use super::{CliError, Flags, compute_device, load_options, open_dataset};

const USAGE: &str = "\
usage: gs-lora eval --data D --model DIR [--split val|test] [--per-class] [--batch-size 64]
                    [--val-fraction F] [--max-classes N] [--eval-per-class N] [--split-seed S]
                    [--backend flex|ndarray|wgpu|cuda] [--fused on|off] [--seed 0]

Prints the top-1 accuracy of the model in DIR (a `gs-lora pretrain` output or a forgetting
checkpoint RUN/checkpoints/task-N) on D's split: all classes, the classes forgotten so far and
the remaining ones; with --per-class, every class. Pass the data flags used for pretraining;
the split seed defaults to the one the model records.";

pub(super) fn run(args: &[String]) -> Result<(), CliError> {
    let Some(mut flags) = Flags::parse(args, &["per-class"], USAGE)? else {
        return Ok(());
    };
    let data = flags.required_path("data")?;
    let model_dir = ClassifierDir::new(flags.required_path("model")?);
    let split = flags.take("split").unwrap_or_else(|| "val".into());
    let per_class = flags.switch("per-class");
    let batch_size = flags.number("batch-size", 64usize)?;
    let seed = flags.number("seed", 0u64)?;
    let device = compute_device(&mut flags)?;
    let info = model_dir.info()?;
    let options = load_options(
        &mut flags,
        LoadOptions {
            max_side: Some(info.preprocess.resize_side()),
            seed: info.split_seed,
            ..LoadOptions::default()
        },
    )?;
    flags.finish()?;

    let dataset = open_dataset(&data, &options)?;
    info.check_data(&dataset)?;
    let set = match split.as_str() {
        "val" => &dataset.val,
        "test" => &dataset.test,
        other => {
            return Err(CliError::Usage(format!(
                "--split must be val or test, found `{other}`\n\n{USAGE}"
            )));
        }
    };
    if set.is_empty() {
        return Err(CliError::Usage(format!(
            "the {split} split of {} is empty",
            data.display()
        )));
    }
    let model = model_dir.load(&LoraConfig::new(), seed, &device)?;
    let accuracy = class_accuracy(
        &model,
        set,
        dataset.num_classes(),
        &info.preprocess,
        batch_size,
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
    println!("{} split of {}:", split, data.display());
    show("all", &all);
    if !info.forgotten.is_empty() {
        show("forgotten", &info.forgotten);
        show("remaining", &remaining);
    }
    if per_class {
        for (class, name) in dataset.class_names.iter().enumerate() {
            show(name, &[class]);
        }
    }
    Ok(())
}
