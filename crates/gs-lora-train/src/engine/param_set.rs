//! Values of a model's parameters keyed by their checkpoint path (`blocks.3.mlp.fc1.weight`),
//! flattened: what a method carries from one task to the next (importance anchors, a teacher)
//! and writes beside each task's checkpoint, so that a resumed run continues with it. Paths,
//! not [`ParamId`]s, survive a model read back from its checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::error::{Result, TrainError, io_error};
use crate::io::write_atomic;

/// Flattened parameter values by path.
#[derive(Debug, Clone, Default)]
pub struct ParamSet(BTreeMap<String, Tensor<1>>);

/// One float parameter of a model: its path, id and value flattened to `[numel]` (still on the
/// model's graph).
#[derive(Debug, Clone)]
pub struct PathParam {
    /// Field names from the model down to the parameter, joined by `.`.
    pub path: String,
    /// The parameter's id in this model.
    pub id: ParamId,
    /// Its value, flattened.
    pub value: Tensor<1>,
}

/// Every float parameter of `model` with its path, in visiting order.
pub fn path_params<M: Module>(model: &M) -> Vec<PathParam> {
    struct Collect {
        names: Vec<String>,
        params: Vec<PathParam>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.names.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.names.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let numel = value.shape().num_elements();
            self.params.push(PathParam {
                path: self.names.join("."),
                id: param.id,
                value: value.reshape([numel]),
            });
        }
    }
    let mut collect = Collect {
        names: Vec::new(),
        params: Vec::new(),
    };
    model.visit(&mut collect);
    collect.params
}

impl ParamSet {
    /// The current values of `model`'s parameters `ids`, detached from any graph.
    pub fn of<M: Module>(model: &M, ids: &[ParamId]) -> Self {
        Self(
            path_params(model)
                .into_iter()
                .filter(|p| ids.contains(&p.id))
                .map(|p| (p.path, p.value.detach()))
                .collect(),
        )
    }

    /// The values of the parameter at `path`.
    pub fn get(&self, path: &str) -> Option<&Tensor<1>> {
        self.0.get(path)
    }

    /// Sets the values of the parameter at `path`.
    pub fn insert(&mut self, path: String, values: Tensor<1>) {
        self.0.insert(path, values);
    }

    /// The paths and values, by path.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor<1>)> {
        self.0.iter()
    }

    /// The number of parameters held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no parameter is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes the set to `path` as safetensors (`f32`), atomically.
    ///
    /// # Errors
    /// Values that cannot be read back from their device, or file errors.
    pub fn write(&self, path: &Path) -> Result<()> {
        let format = |message: String| TrainError::Format {
            path: path.to_path_buf(),
            message,
        };
        let mut bytes = Vec::with_capacity(self.0.len());
        for (name, values) in &self.0 {
            let values = values
                .clone()
                .try_into_vec_as::<f32>()
                .map_err(|err| format(format!("reading `{name}` back: {err:?}")))?;
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            bytes.push((name, values.len(), data));
        }
        let views = bytes
            .iter()
            .map(|(name, len, data)| {
                safetensors::tensor::TensorView::new(Dtype::F32, vec![*len], data)
                    .map(|view| (name.as_str(), view))
                    .map_err(|err| format(err.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let file = safetensors::serialize(views, None).map_err(|err| format(err.to_string()))?;
        write_atomic(path, &file)
    }

    /// The set written at `path`, on `device`.
    ///
    /// # Errors
    /// A missing or unreadable file, one over the memory limit, or one that is not a set of
    /// flat `f32` tensors.
    pub fn read(path: &Path, device: &Device) -> Result<Self> {
        let format = |message: String| TrainError::Format {
            path: path.to_path_buf(),
            message,
        };
        let size = std::fs::metadata(path)
            .map_err(io_error("reading", path))?
            .len();
        gs_lora_core::Limits::from_env()?
            .check_memory(|| path.display().to_string(), u128::from(size))?;
        let file = std::fs::read(path).map_err(io_error("reading", path))?;
        let tensors = SafeTensors::deserialize(&file).map_err(|err| format(err.to_string()))?;
        let mut set = BTreeMap::new();
        for (name, view) in tensors.tensors() {
            if view.dtype() != Dtype::F32 || view.shape().len() != 1 {
                return Err(format(format!(
                    "`{name}`: expected a flat f32 tensor, found {:?} of shape {:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let len = values.len();
            set.insert(
                name,
                Tensor::from_data(TensorData::new(values, [len]), device),
            );
        }
        Ok(Self(set))
    }

    /// `model` with each parameter this set holds given the set's values (same ids, same
    /// trainability).
    ///
    /// # Errors
    /// A path the model lacks, or values of another size than the parameter.
    pub fn restore<M: Module>(&self, model: M) -> Result<M> {
        struct Restore<'a> {
            set: &'a ParamSet,
            names: Vec<String>,
            found: usize,
            problem: Option<String>,
        }
        impl ModuleMapper for Restore<'_> {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.names.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.names.pop();
            }
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let path = self.names.join(".");
                let Some(values) = self.set.get(&path) else {
                    return param;
                };
                self.found += 1;
                let shape = param.lazy_shape();
                if values.dims()[0] != shape.num_elements() {
                    self.problem.get_or_insert(format!(
                        "`{path}` holds {} values for a parameter of shape {:?}",
                        values.dims()[0],
                        shape.as_slice()
                    ));
                    return param;
                }
                let values = values.clone().reshape(shape);
                param.map(|_| values)
            }
        }
        let mut restore = Restore {
            set: self,
            names: Vec::new(),
            found: 0,
            problem: None,
        };
        let model = model.map(&mut restore);
        if let Some(problem) = restore.problem {
            return Err(TrainError::Data(problem));
        }
        if restore.found != self.0.len() {
            let paths: Vec<String> = path_params(&model).into_iter().map(|p| p.path).collect();
            let missing: Vec<&String> = self.0.keys().filter(|k| !paths.contains(k)).collect();
            return Err(TrainError::Data(format!(
                "the model has no parameter at {missing:?}"
            )));
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Module, Debug)]
    struct Inner {
        weight: Param<Tensor<2>>,
    }

    #[derive(Module, Debug)]
    struct Outer {
        layers: Vec<Inner>,
        bias: Param<Tensor<1>>,
    }

    fn outer(values: [f32; 5], device: &Device) -> Outer {
        let weight = Tensor::<2>::from_data(TensorData::new(values[..4].to_vec(), [2, 2]), device);
        let bias = Tensor::<1>::from_data(TensorData::new(vec![values[4]], [1]), device);
        Outer {
            layers: vec![Inner {
                weight: Param::from_tensor(weight),
            }],
            bias: Param::from_tensor(bias),
        }
    }

    fn values(model: &Outer) -> Vec<f32> {
        path_params(model)
            .into_iter()
            .flat_map(|p| p.value.try_into_vec_as::<f32>().expect("f32"))
            .collect()
    }

    /// A set taken from one model, written, read back and restored into another model of the
    /// same layout gives it the first one's values under the same paths, and only for the
    /// parameters chosen. Catches paths that do not match on restore (a silent no-op), values
    /// reshaped in another order, or the file's bytes misread.
    #[test]
    fn a_set_survives_its_file_and_restores_by_path() {
        let device = Device::default();
        let source = outer([1.0, 2.0, 3.0, 4.0, 5.0], &device);
        let paths: Vec<String> = path_params(&source).into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["layers.0.weight", "bias"]);
        let set = ParamSet::of(&source, &[source.layers[0].weight.id]);
        assert_eq!(set.len(), 1);
        let scratch = tempfile::tempdir().expect("scratch");
        let dir = scratch.path();
        let file = dir.join("set.safetensors");
        set.write(&file).expect("write");
        let read = ParamSet::read(&file, &device).expect("read");
        let target = read.restore(outer([0.0; 5], &device)).expect("restore");
        assert_eq!(values(&target), [1.0, 2.0, 3.0, 4.0, 0.0]);

        let mut foreign = ParamSet::default();
        foreign.insert(
            "layers.1.weight".into(),
            Tensor::from_data(TensorData::new(vec![0.0f32; 4], [4]), &device),
        );
        assert!(
            foreign.restore(outer([0.0; 5], &device)).is_err(),
            "no such path"
        );
        let mut wrong = ParamSet::default();
        wrong.insert(
            "bias".into(),
            Tensor::from_data(TensorData::new(vec![0.0f32; 3], [3]), &device),
        );
        assert!(wrong.restore(outer([0.0; 5], &device)).is_err(), "size");
        std::fs::write(&file, b"not safetensors").expect("write");
        assert!(ParamSet::read(&file, &device).is_err());
    }
}
