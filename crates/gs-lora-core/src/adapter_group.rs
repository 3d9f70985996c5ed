//! Adapter groups: how a model exposes its LoRA layers to the losses and the training loop.

use burn::module::{Module, ParamId};

use crate::error::{CoreError, Result};
use crate::lora::{LoraInit, LoraLinear, derive_seed};

/// The LoRA layers of one unit of group sparsity: in GS-LoRA, the adapted `fc1` and `fc2` of one
/// Transformer block's FFN. `L` is `&LoraLinear` or `&mut LoraLinear`.
#[derive(Debug)]
pub struct LoraGroup<L> {
    /// Name of the group, e.g. `blocks.3`; used in reports.
    pub name: String,
    /// The adapted layers of the group.
    pub layers: Vec<L>,
}

impl<L> LoraGroup<L> {
    /// A group called `name` holding `layers`.
    pub fn new(name: impl Into<String>, layers: Vec<L>) -> Self {
        Self {
            name: name.into(),
            layers,
        }
    }

    fn ensure_not_empty(&self) -> Result<()> {
        if self.layers.is_empty() {
            return Err(CoreError::EmptyGroup {
                group: self.name.clone(),
            });
        }
        Ok(())
    }
}

/// A model whose LoRA adapters are organised in groups (one per Transformer block in GS-LoRA).
///
/// Implemented by every model of `gs-lora-models`; the losses, the group lasso and the training
/// loop only see this trait. Both methods must list the same groups in the same order.
pub trait LoraModel: Module {
    /// The adapter groups, in a fixed order (block order).
    fn lora_groups(&self) -> Vec<LoraGroup<&LoraLinear>>;

    /// The adapter groups, mutably, in the same order as [`lora_groups`](Self::lora_groups).
    fn lora_groups_mut(&mut self) -> Vec<LoraGroup<&mut LoraLinear>>;
}

/// The non-empty adapter groups of `model`.
///
/// # Errors
/// [`CoreError::NoGroups`] when the model exposes none, [`CoreError::EmptyGroup`] when a group
/// holds no layer.
pub fn checked_groups<M: LoraModel>(model: &M) -> Result<Vec<LoraGroup<&LoraLinear>>> {
    let groups = model.lora_groups();
    if groups.is_empty() {
        return Err(CoreError::NoGroups);
    }
    groups.iter().try_for_each(LoraGroup::ensure_not_empty)?;
    Ok(groups)
}

/// The non-empty adapter groups of `model`, mutably.
///
/// # Errors
/// As [`checked_groups`].
pub fn checked_groups_mut<M: LoraModel>(model: &mut M) -> Result<Vec<LoraGroup<&mut LoraLinear>>> {
    let groups = model.lora_groups_mut();
    if groups.is_empty() {
        return Err(CoreError::NoGroups);
    }
    groups.iter().try_for_each(LoraGroup::ensure_not_empty)?;
    Ok(groups)
}

/// Ids of every adapter factor (`lora_a`, `lora_b`) of `model`: the only parameters GS-LoRA
/// trains. Pass them to `GradientsParams::from_params` to keep an optimiser off everything else.
pub fn adapter_param_ids<M: LoraModel>(model: &M) -> Vec<ParamId> {
    model
        .lora_groups()
        .iter()
        .flat_map(|group| group.layers.iter())
        .flat_map(|layer| [layer.lora_a.id, layer.lora_b.id])
        .collect()
}

/// Folds every adapter of `model` into its base weight (the end of a GS-LoRA task).
///
/// # Errors
/// [`CoreError::AlreadyMerged`] if any adapter is already merged; the model is then unchanged.
pub fn merge_adapters<M: LoraModel>(model: &mut M) -> Result<()> {
    let mut groups = checked_groups_mut(model)?;
    let layers = || groups.iter().flat_map(|group| group.layers.iter());
    if layers().any(|layer| layer.is_merged()) {
        return Err(CoreError::AlreadyMerged);
    }
    groups
        .iter_mut()
        .flat_map(|group| group.layers.iter_mut())
        .try_for_each(|layer| layer.merge())
}

/// Gives every layer of `model` a fresh adapter (the start of a GS-LoRA task).
///
/// Layer `i` (counting through the groups in order) draws its `A` from `derive_seed(seed, i)`.
///
/// # Errors
/// As [`checked_groups_mut`].
pub fn reset_adapters<M: LoraModel>(model: &mut M, init: LoraInit, seed: u64) -> Result<()> {
    let mut groups = checked_groups_mut(model)?;
    for (index, layer) in groups
        .iter_mut()
        .flat_map(|group| group.layers.iter_mut())
        .enumerate()
    {
        layer.reset(init, derive_seed(seed, index as u64));
    }
    Ok(())
}
