//! Parameters picked by their checkpoint path (`blocks.3.mlp.fc1.weight`) and the type of the
//! module that holds them.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// Where a parameter sits: the field names from the model down to it, and the type of the
/// module that holds it (`Struct:FrozenBatchNorm2d`).
#[derive(Debug, Clone, Copy)]
pub struct ParamPath<'a> {
    /// Field names (and `Vec` indices) from the model down to the parameter.
    pub names: &'a [String],
    /// The container type of the module holding the parameter, as Burn names it.
    pub holder: &'a str,
}

impl ParamPath<'_> {
    /// Whether the path starts with `prefix` (`["backbone", "stages", "0"]`).
    pub fn starts_with(&self, prefix: &[&str]) -> bool {
        self.names.len() >= prefix.len() && self.names.iter().zip(prefix).all(|(a, b)| a == b)
    }

    /// The parameter's own field name (`weight`, `lora_a`).
    pub fn field(&self) -> &str {
        self.names.last().map_or("", String::as_str)
    }
}

/// Ids of the float parameters of `model` whose path `keep` accepts, in visiting order.
pub fn param_ids_where<M: Module>(model: &M, keep: impl Fn(ParamPath) -> bool) -> Vec<ParamId> {
    let mut visitor = Visitor {
        names: Vec::new(),
        holders: Vec::new(),
        ids: Vec::new(),
        keep,
    };
    model.visit(&mut visitor);
    visitor.ids
}

/// The number of scalars in the parameters `ids` of `model`.
pub fn param_count<M: Module>(model: &M, ids: &[ParamId]) -> usize {
    struct Count<'a> {
        ids: &'a [ParamId],
        count: usize,
    }
    impl ModuleVisitor for Count<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.ids.contains(&param.id) {
                self.count += param.lazy_shape().num_elements();
            }
        }
    }
    let mut count = Count { ids, count: 0 };
    model.visit(&mut count);
    count.count
}

struct Visitor<K> {
    names: Vec<String>,
    holders: Vec<String>,
    ids: Vec<ParamId>,
    keep: K,
}

impl<K: Fn(ParamPath) -> bool> ModuleVisitor for Visitor<K> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = ParamPath {
            names: &self.names,
            holder: self.holders.last().map_or("", String::as_str),
        };
        if (self.keep)(path) {
            self.ids.push(param.id);
        }
    }

    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.names.push(name.to_string());
        self.holders.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.names.pop();
        self.holders.pop();
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    use super::*;

    #[derive(Module, Debug)]
    struct Inner {
        proj: Linear,
    }

    #[derive(Module, Debug)]
    struct Outer {
        blocks: Vec<Inner>,
        head: Linear,
    }

    /// Paths name every field and index down to the parameter, and the holder is the type
    /// that declares it. Catches a path that drops the `Vec` index or the field name.
    #[test]
    fn paths_name_fields_indices_and_holder() {
        let device = Device::default();
        let linear = || LinearConfig::new(2, 2).init(&device);
        let model = Outer {
            blocks: vec![Inner { proj: linear() }, Inner { proj: linear() }],
            head: linear(),
        };
        let all = param_ids_where(&model, |_| true);
        assert_eq!(all.len(), 6);
        let seen = std::cell::RefCell::new(Vec::new());
        param_ids_where(&model, |path| {
            seen.borrow_mut()
                .push((path.names.join("."), path.holder.to_string()));
            false
        });
        let seen = seen.into_inner();
        assert_eq!(
            seen[0],
            ("blocks.0.proj.weight".into(), "Struct:Linear".into())
        );
        assert_eq!(seen[5].0, "head.bias");
        let head = param_ids_where(&model, |path| path.starts_with(&["head"]));
        assert_eq!(
            head,
            vec![
                model.head.weight.id,
                model.head.bias.as_ref().expect("test value").id
            ]
        );
        let second = param_ids_where(&model, |p| {
            p.starts_with(&["blocks", "1"]) && p.field() == "weight"
        });
        assert_eq!(second, vec![model.blocks[1].proj.weight.id]);
        assert_eq!(param_count(&model, &head), 6);
        assert_eq!(param_count(&model, &all), 18);
    }
}
