//! `gs-lora compare`: several forgetting methods on one model and dataset, over several seeds,
//! with one table.

use std::path::{Path, PathBuf};

use super::{
    CliError, DataArgs, DeviceArgs, ForgetArgs, forget_load_options, is_embedded,
    model_load_options, open_dataset,
};
use clap::Args;
use gs_lora_train::classification::{ClassifierDir, run_forgetting};
use gs_lora_train::compare::{
    CompareSettings, DEFAULT_METHODS, compare, official_full_model_lr, write_jobs,
};
use gs_lora_train::io::ensure_disjoint;
use gs_lora_train::report::comparison_table;
use gs_lora_train::{ForgetConfig, MethodKind};

/// The flags that make a comparison: its methods, seeds, reference and whole-model rate.
/// `gs-lora compare` takes them with defaults; an example (`forget_cub`, `forget_coco`)
/// compares instead of running one method when --methods is given.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct CompareArgs {
    /// The methods, comma separated, any of `forget --method` (`gs-lora compare`'s default:
    /// gs-lora,lora,fine-tune,neg-grad+,random-labels,salun).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "M1,M2,…",
        conflicts_with = "method"
    )]
    pub methods: Option<Vec<MethodKind>>,
    /// The seeds each method runs with, comma separated (default: --config's seed, else 0).
    #[arg(long, value_delimiter = ',', value_name = "S1,S2,…")]
    pub seeds: Option<Vec<u64>>,
    /// One of the methods: the others' gap to it per task (|acc_f|, |acc_r|, |MIA|
    /// differences, seed by seed, and their average), e.g. retrain-ft.
    #[arg(long, value_name = "METHOD")]
    pub reference: Option<MethodKind>,
    /// Peak learning rate of the methods that train the whole model (default 1e-4, the
    /// official classification baselines', with Retrain 3e-4 and DER, DER++, FDR 1e-3 unless
    /// the config's baseline.lr says otherwise; `forget_coco`: 6e-4, the official detection
    /// baselines'); the adapter methods take --lr.
    #[arg(long, value_name = "LR")]
    pub full_model_lr: Option<f64>,
}

impl CompareArgs {
    /// The comparison of `forget`'s settings: each flag not given is taken from `recorded` (a
    /// comparison's saved `compare.json`), else its default (`default_methods`, `forget.seed`,
    /// `full_model_lr`).
    pub fn settings(
        &self,
        forget: ForgetConfig,
        recorded: Option<&CompareSettings>,
        (default_methods, full_model_lr): (&[MethodKind], f64),
    ) -> CompareSettings {
        CompareSettings {
            methods: self
                .methods
                .clone()
                .or_else(|| recorded.map(|r| r.methods.clone()))
                .unwrap_or_else(|| default_methods.to_vec()),
            seeds: self
                .seeds
                .clone()
                .or_else(|| recorded.map(|r| r.seeds.clone()))
                .unwrap_or_else(|| vec![forget.seed]),
            reference: self
                .reference
                .or_else(|| recorded.and_then(|r| r.reference)),
            full_model_lr: self
                .full_model_lr
                .or_else(|| recorded.map(|r| r.full_model_lr))
                .unwrap_or(full_model_lr),
            forget,
        }
    }

    /// An example's comparison: `None` without --methods (the example runs one method), the
    /// settings of [`Self::settings`] with them, `full_model_lr` the whole-model rate unless
    /// --full-model-lr is given.
    ///
    /// # Errors
    /// --seeds, --reference or --full-model-lr without --methods.
    pub fn comparison(
        &self,
        forget: &ForgetConfig,
        full_model_lr: f64,
    ) -> Result<Option<CompareSettings>, CliError> {
        match &self.methods {
            Some(_) => Ok(Some(self.settings(
                forget.clone(),
                None,
                (&[], full_model_lr),
            ))),
            None if *self == Self::default() => Ok(None),
            None => Err(CliError::Usage(
                "--seeds, --reference and --full-model-lr set up a comparison: name its \
                 --methods (one method runs with --method and --seed)"
                    .into(),
            )),
        }
    }
}

/// The flags of `gs-lora compare` (its help is on [`Command`](super::Command)).
#[derive(Debug, Args)]
pub struct CompareCommand {
    /// The dataset the model was trained on.
    #[arg(long, value_name = "D")]
    data: PathBuf,
    /// The model directory every method starts from.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The comparison directory: OUT/METHOD/seed-S is each run's directory; running again
    /// with it resumes every unfinished run.
    #[arg(long, value_name = "OUT")]
    out: PathBuf,
    #[command(flatten)]
    compare: CompareArgs,
    /// Run nothing: print one `gs-lora forget` command per method and seed (stdout, one line
    /// each) for a scheduler to fan out, e.g. `… --jobs | xargs -d '\n' -n 1 -P 4 sh -c` or a
    /// job array; afterwards `gs-lora compare --data D --model M --out OUT --config
    /// OUT/compare.json` finds the runs finished and writes the table.
    #[arg(long)]
    jobs: bool,
    #[command(flatten)]
    forget: ForgetArgs,
    #[command(flatten)]
    data_args: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The explanation under `gs-lora compare --help`.
pub(super) const AFTER_HELP: &str = "\
Runs `forget` once per method and seed, every run on the same schedule (a seed draws the same
class order and subsets for every method), into OUT/METHOD/seed-S (a run directory each: an
interrupted comparison resumes where it stopped). Then writes OUT/comparison.md, .csv and .json
(per method and task, mean ± standard deviation over the seeds of acc_f, acc_r, acc_o, H, the
membership-attack efficacy on the forget set (MIA), seconds, trained parameters and peak memory)
and the plots OUT/h_per_task.svg/.png and OUT/retain_vs_forget.svg/.png. Every forget flag
applies to all runs; --method and --seed are replaced by --methods and --seeds.";

impl CompareCommand {
    pub(super) fn run(self) -> Result<(), CliError> {
        if self.forget.method.is_some() || self.forget.seed.is_some() {
            return Err(CliError::Usage(
                "compare runs --methods and --seeds; --method and --seed belong to `forget`".into(),
            ));
        }
        let model_dir = ClassifierDir::new(&self.model);
        let mut inputs = vec![("--model", model_dir.path())];
        if !is_embedded(&self.data) {
            inputs.push(("--data", self.data.as_path()));
        }
        ensure_disjoint(&[("--out", self.out.as_path())], &inputs)?;
        let recorded = match &self.forget.config {
            Some(path) => CompareSettings::from_file(path)?,
            None => None,
        };
        let settings = self.compare.settings(
            self.forget.config(ForgetConfig::default())?,
            recorded.as_ref(),
            (&DEFAULT_METHODS, official_full_model_lr()),
        );
        settings.validate()?;
        if self.jobs {
            return self.print_jobs(&settings);
        }

        let devices = self.device.data_parallel()?;
        let info = model_dir.info()?;
        let options = self.data_args.options(forget_load_options(
            &settings.forget,
            model_load_options(&info),
        ));
        let dataset = open_dataset(&self.data, &options)?;
        info.check_data(&dataset)?;
        let rows = compare(&self.out, &settings, "acc", |config, run| {
            let model = model_dir.load(&config.lora, config.seed, devices.primary())?;
            run_forgetting(
                model,
                &dataset,
                config,
                &info.preprocess,
                run,
                devices.clone(),
            )
        })?;
        println!("\n{}", comparison_table(&rows, "acc"));
        println!(
            "comparison tables and plots in {}, each run in {}/METHOD/seed-S",
            self.out.display(),
            self.out.display()
        );
        Ok(())
    }

    /// `--jobs`: the comparison's runs as `gs-lora forget` command lines, each with the data and
    /// device flags given here.
    fn print_jobs(&self, settings: &CompareSettings) -> Result<(), CliError> {
        let path = |flag: &str, path: &Path| -> Result<String, CliError> {
            path.to_str().map(str::to_string).ok_or_else(|| {
                CliError::Usage(format!(
                    "{flag} {}: not UTF-8, cannot be printed",
                    path.display()
                ))
            })
        };
        let (data, model) = (path("--data", &self.data)?, path("--model", &self.model)?);
        let mut shared = self.data_args.flags();
        shared.extend(self.device.flags());
        for job in write_jobs(&self.out, settings)? {
            let mut line = vec!["gs-lora".to_string(), "forget".into(), "--data".into()];
            line.extend([
                data.clone(),
                "--model".into(),
                model.clone(),
                "--out".into(),
            ]);
            line.extend([path("--out", &job.run)?, "--config".into()]);
            line.push(path("--out", &job.config)?);
            line.extend(shared.iter().cloned());
            let quoted = shlex::try_join(line.iter().map(String::as_str))
                .map_err(|err| CliError::Usage(format!("a job's command line: {err}")))?;
            println!("{quoted}");
        }
        eprintln!(
            "{} jobs; when all have finished, `gs-lora compare --data {data} --model {model} \
             --out {} --config {}` writes the table",
            settings.methods.len() * settings.seeds.len(),
            self.out.display(),
            CompareSettings::path(&self.out).display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        compare: CompareArgs,
        #[command(flatten)]
        forget: ForgetArgs,
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Command::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
    }

    fn flags(args: &[&str]) -> CompareArgs {
        parse(args).expect("flags").compare
    }

    /// An example runs one method unless --methods is named, refuses the other comparison
    /// flags alone (naming --methods) and --methods with --method; a comparison takes the run's
    /// seed and the caller's whole-model rate unless told otherwise; `gs-lora compare` fills
    /// each missing flag from the recorded comparison, then the defaults. Catches a stray
    /// --seeds silently ignored, a recorded setting lost on resume, and a given flag losing
    /// to the record.
    #[test]
    fn comparison_flags_fall_back_to_the_record_then_the_defaults() {
        let forget = ForgetConfig {
            seed: 7,
            ..ForgetConfig::default()
        };
        assert_eq!(flags(&[]).comparison(&forget, 1e-4).expect("one run"), None);
        for alone in ["--seeds=1,2", "--reference=l2", "--full-model-lr=1e-3"] {
            let err = flags(&[alone]).comparison(&forget, 1e-4).expect_err(alone);
            assert!(err.to_string().contains("--methods"), "{alone}: {err}");
        }
        assert!(parse(&["--methods=ewc", "--method=l2"]).is_err());

        let settings = flags(&["--methods=gs-lora,ewc"])
            .comparison(&forget, 6e-4)
            .expect("valid")
            .expect("a comparison");
        assert_eq!(settings.methods, [MethodKind::GsLora, MethodKind::Ewc]);
        assert_eq!(
            (settings.seeds, settings.reference, settings.full_model_lr),
            (vec![7], None, 6e-4)
        );
        assert_eq!(settings.forget, forget);

        let recorded = CompareSettings {
            methods: vec![MethodKind::L2],
            seeds: vec![3, 4],
            reference: Some(MethodKind::L2),
            full_model_lr: 3e-4,
            forget: forget.clone(),
        };
        let defaults = (&DEFAULT_METHODS[..], 1e-4);
        let settings = flags(&["--seeds=5"]).settings(forget.clone(), Some(&recorded), defaults);
        assert_eq!(
            (settings.methods, settings.seeds),
            (vec![MethodKind::L2], vec![5])
        );
        assert_eq!(
            (settings.reference, settings.full_model_lr),
            (Some(MethodKind::L2), 3e-4)
        );
        let settings = flags(&[]).settings(forget, None, defaults);
        assert_eq!(
            (settings.methods, settings.seeds, settings.full_model_lr),
            (DEFAULT_METHODS.to_vec(), vec![7], 1e-4)
        );
    }
}
