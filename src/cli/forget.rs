//! `gs-lora forget`: continual-forgetting tasks on a model directory.

use gs_lora_train::classification::{ClassifierDir, run_forgetting};
use gs_lora_train::io::ensure_disjoint;
use gs_lora_train::protocol::PRESETS;
use gs_lora_train::report::results_table;
use gs_lora_train::{ForgetConfig, Replay, RunDir};

use super::{
    CliError, Flags, compute_device, forget_config, forget_load_options, is_embedded, load_options,
    open_dataset,
};

/// The usage text, with the defaults of [`ForgetConfig::default`] (written there only).
fn usage() -> String {
    let d = ForgetConfig::default();
    let fraction = match d.replay {
        Replay::Fraction(f) | Replay::Stratified(f) => f.to_string(),
        Replay::FewShot(_) | Replay::GroupFewShot(_) => "F".into(),
    };
    let beta: Vec<String> = d.beta.iter().map(f64::to_string).collect();
    let presets: Vec<&str> = PRESETS.iter().map(|(name, _)| *name).collect();
    let presets = presets.join(", ");
    format!(
        "\
usage: gs-lora forget --data D --model DIR --out RUN [--protocol NAME] [--tasks {}] [--forget-per-task {}]
                      [--missing-classes O] [--class-order seeded|python:SEED|numpy:SEED]
                      [--eval-split test|validation] [--eval-margin on|off]
                      [--method gs-lora|gs-lora++]
                      [--few-shot K | --group-few-shot K | --replay-fraction F | --replay-stratified {fraction}]
                      [--epochs {}] [--min-steps {}] [--batch-size {}] [--rank {}] [--lora-alpha {}] [--lr {:e}]
                      [--min-lr {:e}] [--weight-decay {}] [--clip-grad-norm N] [--bnd auto|B]
                      [--bnd-per-sample on|off] [--beta {}]
                      [--alpha {:e}] [--alpha-warmup-epochs {}] [--big-alpha A]
                      [--proximal on|off] [--bnd-pro {}]
                      [--pro-forget-weight {} | --pro-forget-weights W0,W1,...]
                      [--pro-retain-weight {}] [--dropout P]
                      [--val-fraction F] [--max-classes N] [--train-per-class N]
                      [--eval-per-class N] [--split-seed S] [--backend flex|ndarray|wgpu|cuda]
                      [--fused on|off] [--seed {}]

--protocol sets every value of an official experiment (PROTOCOL.md §1: {presets}), which the other
flags then override; config.json records the protocol and every value the run used.
Forgets --forget-per-task classes per task from the model in DIR (made by `gs-lora pretrain`;
D must have its classes: pass the same data flags; --split-seed defaults to the model's), measuring on the test split as the official
code (--eval-split validation for a dataset without one; --val-fraction then defaults to 0.2,
with the test split to 0, so no training image is set aside). --eval-margin on scores a CosFace
head with its training margin on the true class, as the official code does (it reads the test
labels: only to reproduce the official face numbers). The
class order is a shuffle seeded by --seed, or the official code's (python:1337 for its face and
ImageNet runs, numpy:123 for COCO). --missing-classes O (official open setting: 5) never trains
on the first O classes of the order and reports their accuracy (acc_m) and that of the remaining
and missing classes together (acc_rm) after every task. Writes RUN/config.json, results.json, curves.csv,
accuracy.svg, group_norms.svg and RUN/checkpoints/task-N (model directories). Running again with the same
RUN resumes after the last finished task; RUN is locked while a run uses it, and may not be,
contain or lie inside --data or --model. --proximal off drops the group soft-threshold after
each step (the official code's behaviour: no block's adapters become exactly zero). --dropout P
sets every dropout rate of the model while training (default: the model's config, 0.1 for the
official face ViT and Deformable DETR's residual branches; the official DETR training uses 0.1
everywhere). --min-steps S gives every task at least S optimizer steps: an epoch cycles the
remaining-class batches up to ⌈S / epochs⌉ steps when one pass is shorter (0: one pass, as the
official loop), so small or few-shot tasks are not left with a handful of steps.
Two defaults differ from the official code (--protocol restores it; docs/results.md measures
both): the forgetting bound is ln C + 1 on each forget image's cross-entropy (--bnd auto,
--bnd-per-sample on; the official code bounds the batch mean at 105, set for a CosFace head
whose logits are scaled by 64), and replay keeps ⌈F·n⌉ training images of every class
(--replay-stratified; --replay-fraction is the official floor(F·n) over the whole group,
which leaves classes with few images out of the retention loss). --few-shot K keeps K images
of every class; --group-few-shot K draws K × #classes over each group (the official COCO draw).",
        d.tasks,
        d.forget_per_task,
        d.epochs,
        d.min_steps,
        d.batch_size,
        d.lora.rank,
        d.lora.lora_alpha,
        d.lr,
        d.min_lr,
        d.weight_decay,
        beta.join(","),
        d.group_lasso.weight,
        d.group_lasso.warmup_epochs,
        d.prototype.bound,
        d.prototype.forget_weight,
        d.prototype.retain_weight,
        d.seed,
    )
}

pub(super) fn run(args: &[String]) -> Result<(), CliError> {
    let Some(mut flags) = Flags::parse(args, &[], usage())? else {
        return Ok(());
    };
    let data = flags.required_path("data")?;
    let model_dir = ClassifierDir::new(flags.required_path("model")?);
    let out = RunDir::new(flags.required_path("out")?);
    let mut inputs = vec![("--model", model_dir.path())];
    if !is_embedded(&data) {
        inputs.push(("--data", data.as_path()));
    }
    ensure_disjoint(&[("--out", out.path())], &inputs)?;
    let device = compute_device(&mut flags)?.autodiff();
    let config = forget_config(&mut flags, ForgetConfig::default())?;
    let info = model_dir.info()?;
    let options = load_options(
        &mut flags,
        forget_load_options(&config, info.preprocess.resize_side(), info.split_seed),
    )?;
    flags.finish()?;
    config.validate()?;

    let dataset = open_dataset(&data, &options)?;
    info.check_data(&dataset)?;
    let lora = config.lora.clone();
    let model = model_dir.load(&lora, config.seed, &device)?;
    let state = run_forgetting(model, &dataset, &config, &info.preprocess, &out, &device)?;
    println!("\n{}", results_table(&state.results, "acc"));
    println!(
        "results, curves, plots and checkpoints in {}",
        out.path().display()
    );
    Ok(())
}
