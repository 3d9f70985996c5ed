//! `gs-lora forget`: continual-forgetting tasks on a model directory.

use std::path::PathBuf;

use clap::Args;
use gs_lora_train::classification::{ClassifierDir, run_forgetting};
use gs_lora_train::io::ensure_disjoint;
use gs_lora_train::report::results_table;
use gs_lora_train::{ForgetConfig, RunDir};

use super::{
    CliError, DataArgs, DeviceArgs, ForgetArgs, forget_defaults_help, forget_load_options,
    is_embedded, model_load_options, open_dataset,
};

/// The flags of `gs-lora forget` (its help is on [`Command`](super::Command)).
#[derive(Debug, Args)]
pub struct ForgetCommand {
    /// The dataset the model was trained on.
    #[arg(long, value_name = "D")]
    data: PathBuf,
    /// The model directory.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The run directory: results, curves, plots and checkpoints; running again with it
    /// resumes after the last finished task.
    #[arg(long, value_name = "RUN")]
    out: PathBuf,
    #[command(flatten)]
    forget: ForgetArgs,
    #[command(flatten)]
    data_args: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The explanation under `gs-lora forget --help`, with the defaults of
/// [`ForgetConfig::default`] (written there only).
pub(super) fn after_help() -> String {
    format!(
        "\
Measures on the test split as the official code (--eval-split validation for a dataset without
one; --val-fraction then defaults to 0.2, with the test split to 0, so no training image is set
aside). Writes RUN/config.json (every value the run used: `--config RUN/config.json` runs with
them again), results.json, curves.csv, accuracy.svg/.png, group_norms.svg/.png and
RUN/checkpoints/task-N (model directories). RUN is locked while a run uses it, and may not be,
contain or lie inside --data or --model.

Three defaults differ from the official code (--protocol restores it; docs/results.md
measures both): the forgetting bound is ln C + 1 on each forget image's cross-entropy (--bnd
auto, --bnd-per-sample on; the official code bounds the batch mean at 105, set for a CosFace
head whose logits are scaled by 64); replay keeps ⌈F·n⌉ training images of every class
(--replay-stratified; --replay-fraction is the official floor(F·n) over the whole group); and
the forgetting loss trains on every training image of the classes to erase (--forget-fraction
1; the official code draws them by the replay rule: --forget-fraction replay). --few-shot K
keeps K images of the classes to erase too.

{}",
        forget_defaults_help(&ForgetConfig::default())
    )
}

impl ForgetCommand {
    pub(super) fn run(self) -> Result<(), CliError> {
        let model_dir = ClassifierDir::new(&self.model);
        let out = RunDir::new(&self.out);
        let mut inputs = vec![("--model", model_dir.path())];
        if !is_embedded(&self.data) {
            inputs.push(("--data", self.data.as_path()));
        }
        ensure_disjoint(&[("--out", out.path())], &inputs)?;
        let devices = self.device.data_parallel()?;
        let config = self.forget.config(ForgetConfig::default())?;
        config.validate()?;
        let info = model_dir.info()?;
        let options = self
            .data_args
            .options(forget_load_options(&config, model_load_options(&info)));

        let dataset = open_dataset(&self.data, &options)?;
        info.check_data(&dataset)?;
        let lora = config.lora.clone();
        let model = model_dir.load(&lora, config.seed, devices.primary())?;
        let state = run_forgetting(model, &dataset, &config, &info.preprocess, &out, devices)?;
        println!("\n{}", results_table(&state.results, "acc"));
        println!(
            "results, curves, plots and checkpoints in {}",
            out.path().display()
        );
        Ok(())
    }
}
