//! Editing parameter values outside the autodiff graph.

use burn::module::Param;
use burn::tensor::Tensor;

/// Replaces the value of `param` by `edit(value)`, computed without autodiff, keeping the
/// parameter's id (so optimiser state stays attached) and whether it requires gradients.
///
/// Merging, resetting and the proximal step are edits of the model, not steps of the graph:
/// recording them would chain every later step's graph onto the previous ones.
pub(crate) fn edit_value<const D: usize>(
    param: &mut Param<Tensor<D>>,
    edit: impl FnOnce(Tensor<D>) -> Tensor<D>,
) {
    let value = param.clone().map(|tensor| {
        let require_grad = tensor.is_require_grad();
        let edited = Tensor::from_inner(edit(tensor.inner()));
        if require_grad {
            edited.require_grad()
        } else {
            edited
        }
    });
    *param = value;
}
