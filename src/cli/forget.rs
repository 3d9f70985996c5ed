//! `gs-lora forget`: continual-forgetting tasks on a model directory.

use gs_lora_train::io::ensure_disjoint;
use gs_lora_train::report::results_table;
use gs_lora_train::{ForgetConfig, ModelDir, RunDir, run_forgetting};

use super::{CliError, Flags, forget_config, is_embedded, load_options, open_dataset};
use crate::backend;

const USAGE: &str = "\
usage: gs-lora forget --data D --model DIR --out RUN [--tasks 4] [--forget-per-task 20]
                      [--method gs-lora|gs-lora++] [--few-shot K | --replay-fraction 0.1]
                      [--epochs 10] [--batch-size 32] [--rank 8] [--lora-alpha 1] [--lr 1e-2]
                      [--min-lr 1e-5] [--weight-decay 0.05] [--bnd 105] [--beta 0.2,0.25,0.25,0.2]
                      [--alpha 1e-4] [--alpha-warmup-epochs 0] [--big-alpha A] [--bnd-pro 18]
                      [--pro-forget-weight 0.01] [--pro-retain-weight 0]
                      [--val-fraction F] [--max-classes N] [--train-per-class N]
                      [--eval-per-class N] [--backend flex|ndarray|wgpu|cuda] [--seed 0]

Forgets --forget-per-task classes per task (seeded class order) from the model in DIR (made by
`gs-lora pretrain`; D must have its classes: pass the same data flags), measuring on the
validation split. Writes RUN/config.json, results.json, curves.csv, accuracy.svg,
group_norms.svg and RUN/checkpoints/task-N (model directories). Running again with the same
RUN resumes after the last finished task; RUN is locked while a run uses it, and may not be,
contain or lie inside --data or --model.";

pub(super) fn run(args: &[String]) -> Result<(), CliError> {
    let Some(mut flags) = Flags::parse(args, &[], USAGE)? else {
        return Ok(());
    };
    let data = flags.required_path("data")?;
    let model_dir = ModelDir::new(flags.required_path("model")?);
    let out = RunDir::new(flags.required_path("out")?);
    let mut inputs = vec![("--model", model_dir.path())];
    if !is_embedded(&data) {
        inputs.push(("--data", data.as_path()));
    }
    ensure_disjoint(&[("--out", out.path())], &inputs)?;
    let device = backend::device(flags.take("backend").as_deref())?.autodiff();
    let config = forget_config(&mut flags, ForgetConfig::default())?;
    let info = model_dir.info()?;
    let options = load_options(&mut flags, Some(info.preprocess.resize_side()), config.seed)?;
    flags.finish()?;
    config.validate()?;

    let dataset = open_dataset(&data, &options)?;
    info.check_classes(&dataset)?;
    let lora = config.lora();
    let model = model_dir.load(&lora, config.seed, &device)?;
    let state = run_forgetting(model, &dataset, &config, &info.preprocess, &out, &device)?;
    println!("\n{}", results_table(&state.results, "acc"));
    println!(
        "results, curves, plots and checkpoints in {}",
        out.path().display()
    );
    Ok(())
}
