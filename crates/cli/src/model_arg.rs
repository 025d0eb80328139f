//! The MODEL argument (a path or a built-in name) and the options that shape a compile.
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use millrace::{CompileOptions, CompiledModel, InputSpec, Model, PassOptions, Tensor};
use std::collections::HashMap;
use std::path::Path;

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// An .onnx file, or a built-in model: resnet50, mobilenet_v2, googlenet, vgg16, bert.
    pub model: String,
    /// Intra-op threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Batch size: binds the first dimension of inputs whose batch dimension is symbolic.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Input shape, e.g. `--shape input_ids=1x128` (repeatable).
    #[arg(long = "shape", value_name = "NAME=DxDx..")]
    pub shapes: Vec<String>,
    /// Skip an optimization pass (repeatable; see `millrace plan --list-passes`).
    #[arg(long = "no-pass", value_name = "PASS")]
    pub no_pass: Vec<String>,
    /// How nodes are ordered: `parallel` runs independent branches at the same time,
    /// `sequential` one node after another, `auto` asks the cost model.
    #[arg(long, value_name = "auto|sequential|parallel", default_value = "auto")]
    pub schedule: millrace::Schedule,
    /// What idle pool threads do during a run: `sleep` parks them until the next kernel
    /// wakes them; `spin` has them poll for work until the run ends, so that each kernel
    /// starts on every thread at once (as ONNX Runtime's allow_spinning).
    #[arg(long, value_name = "sleep|spin", default_value = "sleep")]
    pub idle: millrace::IdleWorkers,
}

pub struct Loaded {
    pub model: Model,
    pub label: String,
    builtin: Option<String>,
    args: LoadArgs,
}

fn parse_shape(s: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("--shape `{s}`: expected NAME=DxDx.."))?;
    let dims = if dims.is_empty() {
        vec![]
    } else {
        dims.split(['x', ','])
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow!("--shape `{s}`: `{d}` is not a dimension"))
            })
            .collect::<Result<_>>()?
    };
    Ok((name.to_string(), dims))
}

impl Loaded {
    /// The arguments it was loaded with.
    pub fn args(&self) -> &LoadArgs {
        &self.args
    }

    pub fn new(args: &LoadArgs) -> Result<Loaded> {
        if args.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        let path = Path::new(&args.model);
        let (model, label, builtin) = if path.exists() {
            let threads = args.threads.unwrap_or_else(millrace::default_threads);
            let m = Model::load_with_threads(path, threads)
                .with_context(|| format!("loading {}", path.display()))?;
            (m, path.display().to_string(), None)
        } else if millrace::zoo::names().contains(&args.model.as_str()) {
            let m = millrace::builtin(&args.model)
                .with_context(|| format!("building built-in `{}`", args.model))?;
            (
                m,
                format!("{} (built-in, seeded random weights)", args.model),
                Some(args.model.clone()),
            )
        } else {
            bail!(
                "`{}` is neither a file nor a built-in model (built-ins: {})",
                args.model,
                millrace::zoo::names().join(", ")
            );
        };
        if args.batch == Some(0) {
            bail!("--batch must be at least 1");
        }
        Ok(Loaded {
            model,
            label,
            builtin,
            args: args.clone(),
        })
    }

    /// Concrete input specs from --shape, --batch, built-in defaults, else 1 for symbolic dims.
    pub fn specs(&self) -> Result<Vec<InputSpec>> {
        let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
        if let Some(defaults) = self
            .builtin
            .as_deref()
            .and_then(millrace::zoo::default_input_shapes)
        {
            for (n, mut s) in defaults {
                if let (Some(b), Some(first)) = (self.args.batch, s.first_mut()) {
                    *first = b;
                }
                shapes.insert(n.to_string(), s);
            }
        }
        let inputs = self.model.inputs();
        for s in &self.args.shapes {
            let (n, d) = parse_shape(s)?;
            if !inputs.iter().any(|i| i.name == n) {
                let known: Vec<_> = inputs.iter().map(|i| i.name.as_str()).collect();
                bail!(
                    "--shape: unknown input `{n}`; the model's inputs are: {}",
                    known.join(", ")
                );
            }
            shapes.insert(n, d);
        }
        let mut symbols = HashMap::new();
        if let Some(b) = self.args.batch {
            for i in &inputs {
                match i.shape.as_ref().and_then(|s| s.first()) {
                    Some(millrace::Dim::Sym(s)) => {
                        symbols.insert(s.clone(), b);
                    }
                    Some(millrace::Dim::Known(n)) if *n != b && !shapes.contains_key(&i.name) => {
                        bail!("input `{}` has a fixed batch dimension of {n}; --batch {b} cannot apply", i.name)
                    }
                    _ => {}
                }
            }
        }
        Ok(millrace::input_specs(
            self.model.graph(),
            &shapes,
            &symbols,
            1,
        )?)
    }

    pub fn random(&self, seed: u64) -> Result<Vec<(String, Tensor)>> {
        Ok(millrace::random_inputs(
            self.model.graph(),
            &self.specs()?,
            seed,
        )?)
    }

    fn options(
        &self,
        shapes: HashMap<String, Vec<usize>>,
        threads: Option<usize>,
    ) -> CompileOptions {
        CompileOptions {
            input_shapes: shapes,
            threads: threads.or(self.args.threads),
            passes: PassOptions {
                disabled: self.args.no_pass.iter().cloned().collect(),
                stop_after: None,
            },
            schedule: self.args.schedule,
            idle: self.args.idle,
        }
    }

    /// Compiles for the default specs.
    pub fn compile_with(
        &self,
        shapes: HashMap<String, Vec<usize>>,
        threads: Option<usize>,
    ) -> Result<CompiledModel> {
        self.model
            .compile(&self.options(shapes, threads))
            .context("compiling")
    }

    pub fn compile_stop_after(&self, stop_after: Option<String>) -> Result<CompiledModel> {
        let shapes = self
            .specs()?
            .into_iter()
            .map(|s| (s.name, s.shape))
            .collect();
        let mut opts = self.options(shapes, None);
        opts.passes.stop_after = stop_after;
        self.model.compile(&opts).context("compiling")
    }
}

/// Reads `--inputs`: an .npz keyed by input name, or one .npy for a single-input model.
pub fn read_inputs(path: &Path, loaded: &Loaded) -> Result<Vec<(String, Tensor)>> {
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let inputs = loaded.model.inputs();
        let [only] = inputs.as_slice() else {
            bail!(
                "a single .npy needs a single-input model; this one has {} inputs: use an .npz",
                inputs.len()
            );
        };
        let t =
            millrace::read_npy_file(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(vec![(only.name.clone(), t)]);
    }
    let arrays = millrace::read_npz(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(arrays)
}
