//! GS-LoRA for detection: per task, fresh adapters on every encoder and decoder FFN, the set
//! criterion on remaining-class objects, the bounded forgetting loss on forget-class objects,
//! the group lasso over the layers, and (GS-LoRA++) prototype losses with the class-embedding
//! rows as prototypes; then merging, COCO AP on forget, remaining and old classes, and a
//! checkpoint from which an interrupted run resumes.
//!
//! `L = 2·focal_r + 5·L1_r + 2·GIoU_r + β·(relu(BND − 2·focal_f) + 5·L1_f + 2·GIoU_f)
//!      + α·Σ_layers ‖group‖₂ (+ L_prototype)`.

use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::loss::{PrototypeLossConfig, detection_forget_loss, detection_loss};
use gs_lora_core::{LoraInit, group_lasso, reset_adapters};
use gs_lora_models::deformable::{DeformableDetr, DetrOutput};

use super::criterion::{CriterionTerms, set_criterion};
use super::dataset::{DetectionBatch, DetectionDataset, detection_batch, samples_with};
use super::detector_dir::{DetectorDir, DetectorInfo};
use super::evaluate::detector_ap;
use super::matching::HungarianMatcher;
use crate::batch::Preprocess;
use crate::config::{ForgetConfig, Method};
use crate::error::{Result, TrainError};
use crate::forget::{
    EpochRecord, RunDir, RunState, TaskResult, merge_task_adapters, run_schedule, task_result,
    task_subsets, train_task,
};
use crate::schedule::Task;
use crate::step::{LossTerms, LossWeights};

/// The matched queries' decoder embeddings `[M, d]` and their classes' rows of the class head
/// `[M, d]` (the prototypes of GS-LoRA++ for detection).
fn matched_embeddings(
    model: &DeformableDetr,
    output: &DetrOutput,
    terms: &CriterionTerms,
) -> (Tensor<2>, Tensor<2>) {
    let [batch, queries, d] = output.hidden.dims();
    let device = output.hidden.device();
    let index = |values: Vec<i64>| {
        let len = values.len();
        Tensor::<1, Int>::from_data(TensorData::new(values, [len]), &device)
    };
    let rows = index(terms.matched.iter().map(|&(row, _)| row as i64).collect());
    let labels = index(terms.matched.iter().map(|&(_, l)| l as i64).collect());
    let embeddings = output
        .hidden
        .clone()
        .reshape([batch * queries, d])
        .select(0, rows);
    // Burn's Linear stores [d_in, d_out]: a class's row is a column here.
    let prototypes = model.class_embed.weight.val().transpose().select(0, labels);
    (embeddings, prototypes)
}

/// The GS-LoRA loss of a remaining and a forget batch; with `prototype`, the GS-LoRA++ term on
/// the matched queries' embeddings against their classes' class-head rows.
///
/// # Errors
/// A failing forward, a non-finite bound, or a label outside the model's classes.
pub fn detection_loss_terms(
    model: &DeformableDetr,
    retain: DetectionBatch,
    forget: DetectionBatch,
    weights: LossWeights,
    prototype: Option<&PrototypeLossConfig>,
    matcher: &HungarianMatcher,
) -> Result<LossTerms> {
    let out_r = model.forward_masked(retain.pixels, retain.pixel_mask)?;
    let out_f = model.forward_masked(forget.pixels, forget.pixel_mask)?;
    let terms_r = set_criterion(&out_r, &retain.targets, matcher)?;
    let terms_f = set_criterion(&out_f, &forget.targets, matcher)?;
    let prototype = match prototype {
        Some(loss) if !terms_r.matched.is_empty() && !terms_f.matched.is_empty() => {
            Some(loss.loss(
                matched_embeddings(model, &out_f, &terms_f),
                matched_embeddings(model, &out_r, &terms_r),
            )?)
        }
        _ => None,
    };
    let l_r = detection_loss(terms_r.focal, terms_r.l1, terms_r.giou);
    let l_f = detection_forget_loss(terms_f.focal, terms_f.l1, terms_f.giou, weights.bnd)?;
    Ok(LossTerms::new(
        l_r,
        l_f,
        group_lasso(model)?,
        prototype,
        weights,
    ))
}

/// `true` for the classes of `classes`, out of `num_classes`.
fn class_mask(num_classes: usize, classes: &[usize]) -> Vec<bool> {
    let mut mask = vec![false; num_classes];
    classes.iter().for_each(|&c| mask[c] = true);
    mask
}

/// COCO AP (%) on the forget, remaining and old classes of `task` (old `None` on the first
/// task); an error for a group without any object in the validation split.
fn evaluate(
    model: &DeformableDetr,
    dataset: &DetectionDataset,
    task: &Task,
    config: &ForgetConfig,
    preprocess: &Preprocess,
    device: &Device,
) -> Result<(f64, f64, Option<f64>)> {
    let groups = [&task.forget[..], &task.retain[..], &task.old[..]];
    let aps = detector_ap(
        model,
        &dataset.val,
        preprocess,
        2 * config.batch_size,
        &groups,
        device,
    )?;
    // A group without any object cannot be scored: reporting 0 would read as perfect
    // forgetting (or a collapse).
    let ap = |i: usize, group: &str| {
        aps[i].map(|s| s.ap).ok_or_else(|| {
            TrainError::Data(format!(
                "task {}: the {group} classes have no object in the validation images, so their AP \
                 cannot be measured",
                task.index
            ))
        })
    };
    let old = match task.old.is_empty() {
        true => None,
        false => Some(ap(2, "earlier-forgotten")?),
    };
    Ok((ap(0, "forget")?, ap(1, "remaining")?, old))
}

/// Runs (or resumes) the forgetting tasks of `config` on the detector `model`, writing
/// results (`acc_*` fields hold COCO AP, %) and checkpoints under `run`. `model` must live on
/// an autodiff device.
///
/// # Errors
/// Invalid settings, a failing model, file errors, or a non-finite loss (the run stops and the
/// last finished task's checkpoint stays in place).
pub fn run_detection_forgetting(
    mut model: DeformableDetr,
    dataset: &DetectionDataset,
    config: &ForgetConfig,
    preprocess: &Preprocess,
    run: &RunDir,
    device: &Device,
) -> Result<RunState> {
    dataset.validate()?;
    let lora = config.lora();
    run_schedule(
        &mut model,
        &dataset.labels,
        config,
        run,
        |checkpoint| DetectorDir::new(checkpoint).load(&lora, config.seed, device),
        |model, task| run_detection_task(model, dataset, task, config, preprocess, device),
        |model, task, checkpoint| {
            let info = DetectorInfo {
                config: model.config.clone(),
                class_names: dataset.class_names.clone(),
                preprocess: *preprocess,
                forgotten: task.old.iter().chain(&task.forget).copied().collect(),
            };
            DetectorDir::new(checkpoint).save(model, &info)
        },
    )
}

fn run_detection_task(
    model: &mut DeformableDetr,
    dataset: &DetectionDataset,
    task: &Task,
    config: &ForgetConfig,
    preprocess: &Preprocess,
    device: &Device,
) -> Result<(TaskResult, Vec<EpochRecord>)> {
    let started = Instant::now();
    let t = task.index;
    let task_seed = derive_seed(config.seed, 1000 + t as u64);
    let (ap_f_before, ap_r_before, _) = evaluate(model, dataset, task, config, preprocess, device)?;
    eprintln!(
        "task {t}: forgetting {} classes; before: AP_f {ap_f_before:.2}, AP_r {ap_r_before:.2}",
        task.forget.len()
    );
    reset_adapters(model, LoraInit::for_task(t), task_seed)?;

    let classes = dataset.num_classes();
    let [retain_indices, forget_indices] = task_subsets(
        |class| samples_with(&dataset.train, &class_mask(classes, &[class])),
        task,
        config,
    );
    let masks = [
        class_mask(classes, &task.retain),
        class_mask(classes, &task.forget),
    ];
    let prototype = config.prototype_loss();
    let prototype = (config.method == Method::GsLoraPlusPlus).then_some(&prototype);
    let matcher = HungarianMatcher::default();
    let curves = train_task(
        model,
        config,
        task,
        [&retain_indices, &forget_indices],
        |model, [retain, forget], weights| {
            let batch =
                |indices, mask| detection_batch(&dataset.train, indices, mask, preprocess, device);
            detection_loss_terms(
                model,
                batch(retain, &masks[0])?,
                batch(forget, &masks[1])?,
                weights,
                prototype,
                &matcher,
            )
        },
    )?;
    let groups = merge_task_adapters(model)?;
    let after = evaluate(model, dataset, task, config, preprocess, device)?;
    let result = task_result(
        task,
        [ap_f_before, ap_r_before],
        after,
        groups,
        started,
        "AP",
    );
    Ok((result, curves))
}
