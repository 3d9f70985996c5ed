"""Mutation check of docs/method.md: puts each deliberate error into the code, runs the test that
must catch it, and restores the file. Usage: python3 tools/mutation_check.py [NAME ...]
Prints CAUGHT or MISSED per mutation; a build error counts as COMPILE-ERR (fix the mutation)."""
import subprocess, sys, os
env = dict(os.environ, CARGO_TARGET_DIR=os.path.expanduser("~/.cache/gs-lora-target"))
muts = [
 ("beta<->alpha", "crates/gs-lora-train/src/engine/loss.rs",
  "+ forget.clone().mul_scalar(weights.beta)\n            + lasso.clone().mul_scalar(weights.group_lasso);",
  "+ forget.clone().mul_scalar(weights.group_lasso)\n            + lasso.clone().mul_scalar(weights.beta);",
  ["-p","gs-lora-train","--lib","engine::loss::tests"]),
 ("cosine->linear", "crates/gs-lora-train/src/config.rs",
  "0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())",
  "(self.lr - self.min_lr) * (1.0 - progress)",
  ["-p","gs-lora-train","--test","it","cosine"]),
 ("CE mean->sum", "crates/gs-lora-core/src/loss/classification.rs",
  "Ok(picked.mean().neg())", "Ok(picked.sum().neg())",
  ["-p","gs-lora-core","--test","it","losses::"]),
 ("KL direction", "crates/gs-lora-core/src/loss/prototype.rs",
  "let kl = softmax(prototypes, 1).mul(log_p - log_q).sum_dim(1);",
  "let kl = softmax(embeddings_q, 1).mul(log_q - log_p).sum_dim(1);",
  ["-p","gs-lora-core","--test","it","losses::"]),
 ("H without D", "crates/gs-lora-core/src/metrics.rs",
  "let drop = acc_f_before - acc_f;", "let drop = 100.0 - acc_f;",
  ["-p","gs-lora-core","--test","it","metrics::"]),
 ("threshold without preconditioner", "crates/gs-lora-train/src/method/gs_lora.rs",
  "lr * alpha / ((moment / correction).sqrt() + ADAM_EPSILON)",
  "lr * alpha + 0.0 * moment / correction",
  ["-p","gs-lora-train","--lib","method::gs_lora::tests"]),
 ("threshold without bias correction", "crates/gs-lora-train/src/method/gs_lora.rs",
  "let correction = 1.0 - ADAM_BETA_2.powi(self.steps);",
  "let correction = 1.0;",
  ["-p","gs-lora-train","--lib","method::gs_lora::tests"]),
 ("zeroed group kept training", "crates/gs-lora-train/src/method/gs_lora.rs",
  ".filter(|(i, _)| !self.switched_off.get(*i).copied().unwrap_or(false))",
  ".filter(|_| true)",
  ["-p","gs-lora-train","--lib","method::gs_lora::tests"]),
 ("missing classes replayed", "crates/gs-lora-train/src/engine/schedule.rs",
  "task.missing = task.retain.drain(..count).collect();",
  "task.missing = task.retain[..count].to_vec();",
  ["-p","gs-lora-train","--lib","engine::schedule::tests"]),
 ("head rows in data order", "crates/gs-lora-train/src/classification/pretrained_head.rs",
  "Ok(class_names.iter().map(|name| rows[name.as_str()]).collect())",
  "Ok((0..class_names.len()).collect())",
  ["-p","gs-lora-train","--lib","pretrained_head::tests"]),
 ("subsets ceil", "crates/gs-lora-train/src/engine/sampling.rs",
  "let keep = (group.len() as f64 * fraction).floor() as usize;",
  "let keep = (group.len() as f64 * fraction).ceil() as usize;",
  ["-p","gs-lora-train","--lib","engine::sampling::tests"]),
 ("cosine ends at min_lr", "crates/gs-lora-train/src/config.rs",
  "let progress = epoch as f64 / self.epochs as f64;",
  "let progress = epoch as f64 / (self.epochs.max(2) - 1) as f64;",
  ["-p","gs-lora-train","--test","it","cosine"]),
 ("adamw eps 1e-5", "crates/gs-lora-train/src/engine/task.rs",
  "pub const ADAM_EPSILON: f64 = 1e-8;", "pub const ADAM_EPSILON: f64 = 1e-5;",
  ["-p","gs-lora-train","--lib","method::gs_lora::tests"]),
 ("epoch = longer list", "crates/gs-lora-train/src/engine/task.rs",
  "let steps = batches.retain.len();", "let steps = batches.retain.len().max(batches.forget.len());",
  ["-p","gs-lora-train","--lib","engine::task::tests"]),
 ("fresh adapter frozen", "crates/gs-lora-core/src/lora/linear.rs",
  "if factor.val().is_autodiff() && !factor.val().is_require_grad() {",
  "if false && factor.val().is_autodiff() {",
  ["-p","gs-lora-core","--test","it","lora_linear::"]),
 ("dropout at evaluation", "crates/gs-lora-core/src/dropout.rs",
  "if prob == 0.0 || !x.device().is_autodiff() {", "if prob == 0.0 {",
  ["-p","gs-lora-core","--test","it","dropout::"]),
 ("no dropout after fc2", "crates/gs-lora-models/src/vit/block.rs",
  "dropout(self.fc2.forward(hidden), self.dropout)", "self.fc2.forward(hidden)",
  ["--workspace","--test","it","the_vit_drops"]),
 ("dropout unseeded", "crates/gs-lora-train/src/engine/task.rs",
  "seed_dropout(&model.devices(), derive_seed(epoch_seed, 3));", "let _ = epoch_seed;",
  ["--workspace","--test","dropout_training"]),
 ("per-sample bound ignored", "crates/gs-lora-train/src/method/gs_lora.rs",
  ".bounded_loss(self.config.bnd, self.config.bnd_per_sample)", ".bounded_loss(self.config.bnd, false)",
  ["--workspace","--test","it","the_per_sample_bound_reaches"]),
 ("few-shot remaining drawn first", "crates/gs-lora-train/src/engine/sampling.rs",
  'let forget = draw(&task.forget, task.index, "forget")?;\n            let retain = draw(&task.retain, task.index, "remaining")?;',
  'let retain = draw(&task.retain, task.index, "remaining")?;\n            let forget = draw(&task.forget, task.index, "forget")?;',
  ["--workspace","--test","it","the_official_few_shot"]),
 ("clip ignored", "crates/gs-lora-train/src/engine/task.rs",
  "if let Some(max_norm) = config.clip_grad_norm {", "if let Some(max_norm) = None::<f64> {",
  ["--workspace","--test","it","the_gradient_clip"]),
 ("clip per tensor", "crates/gs-lora-train/src/engine/clip.rs",
  "self.grads.register(param.id, grad.mul_scalar(self.factor));",
  "let norm = grad.clone().square().sum().sqrt().into_scalar::<f64>(); self.grads.register(param.id, grad.mul_scalar(self.factor * 0.0 + 0.1 / (norm + 1e-6)));",
  ["-p","gs-lora-train","--lib","engine::clip"]),
 ("stratified floor", "crates/gs-lora-train/src/engine/sampling.rs",
  "let keep = (samples.len() as f64 * fraction).ceil() as usize;",
  "let keep = (samples.len() as f64 * fraction).floor() as usize;",
  ["-p","gs-lora-train","--lib","engine::sampling::tests"]),
 ("group few-shot of k", "crates/gs-lora-train/src/engine/sampling.rs",
  "group.truncate(k * classes.len());", "group.truncate(k);",
  ["-p","gs-lora-train","--lib","engine::sampling::tests"]),
 ("crowd region as a box", "crates/gs-lora-train/src/detection/average_precision.rs",
  "Some(g) if gts[g].1 => {}", "Some(g) if gts[g].1 && false => {}",
  ["-p","gs-lora-train","--test","it","average_precision_matches"]),
 ("group scored on every image", "crates/gs-lora-train/src/detection/average_precision.rs",
  ".filter(|d| images.contains(&d.image))", ".filter(|d| d.image < usize::MAX || images.is_empty())",
  ["-p","gs-lora-train","--test","it","average_precision_matches"]),
 ("augmentation dropped", "crates/gs-lora-train/src/detection/forget.rs",
  "let Some(augment) = &self.augment else {", "let Some(augment) = None::<&DetrAugment> else {",
  ["-p","gs-lora-train","--test","it","detr_augmentation"]),
 ("flip leaves boxes", "crates/gs-lora-train/src/detection/augment.rs",
  "bbox: [1.0 - t.bbox[0], t.bbox[1], t.bbox[2], t.bbox[3]],", "bbox: [t.bbox[0], t.bbox[1], t.bbox[2], t.bbox[3]],",
  ["-p","gs-lora-train","--lib","detection::augment"]),
 ("default bound without +1", "crates/gs-lora-train/src/classification/forget.rs",
  "(classes as f64).ln() + 1.0", "(classes as f64).ln()",
  ["-p","gs-lora-train","--lib","classification::forget::tests"]),
 ("forget batch of remaining classes", "crates/gs-lora-train/src/engine/task.rs",
  "forget: family.batch(indices.forget, &task.forget, derive_seed(step_seed, 2))?,",
  "forget: family.batch(indices.forget, &task.retain, derive_seed(step_seed, 2))?,",
  ["-p","gs-lora-train","--test","it","a_detection_task_erases"]),
 ("split seed from the run seed", "src/cli/flags.rs",
  "        seed: split_seed,", "        seed: config.seed + split_seed,",
  ["--workspace","--test","it","pretrain_forget_and_eval"]),
]
only = sys.argv[1:] 
for name, path, old, new, test in muts:
    if only and name not in only: continue
    src = open(path).read()
    if name == "KL direction":
        src2 = src.replace("let log_q = log_softmax(embeddings, 1);", "let log_q = log_softmax(embeddings.clone(), 1);\n    let embeddings_q = embeddings;")
        assert src2 != src
        mutated = src2.replace(old, new)
    else:
        mutated = src.replace(old, new)
    assert mutated != src, name
    open(path, "w").write(mutated)
    try:
        r = subprocess.run(["cargo","test"]+test, env=env, capture_output=True, text=True, timeout=900)
        out = r.stdout + r.stderr
        failed = [l for l in out.splitlines() if l.startswith("test ") and "FAILED" in l]
        status = "CAUGHT" if r.returncode != 0 and failed else ("COMPILE-ERR" if "error[" in out else "MISSED")
        print(f"{name}: {status} {failed[:3]}", flush=True)
    finally:
        open(path, "w").write(src)
