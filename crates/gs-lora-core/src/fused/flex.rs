//! The fused ops as a Burn backend extension on Flex, with hand-written backward passes for
//! `Autodiff<Flex>`.
//!
//! Burn's autodiff decomposes the ops it has no backward for into primitive ops, each a separate
//! single-threaded pass over the activations that allocates its result and records its own
//! backward; the ops here run as one parallel, vectorised pass each way.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::{DType, TensorData};

use super::attention::{self, QkvShape};
use super::kernels;

/// Ops that Flex runs fused, and `Autodiff<Flex>` differentiates as one node each.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// The exact (erf) GELU, element-wise.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax over the last axis.
    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// LayerNorm over the last axis with affine `gamma` and `beta` (`[d]`); `f32` only.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;
    /// Multi-head self-attention from a packed `qkv` (`[batch, tokens, 3·dim]`, `f32`), heads
    /// concatenated: `[batch, tokens, dim]`.
    fn fused_qkv_attention(
        qkv: FloatTensor<Self>,
        num_heads: usize,
        scale: f32,
    ) -> FloatTensor<Self>;
    /// `x·(weight + scale·lora_a·lora_b) + bias`: `x` `[tokens, d_in]`, `weight` `[d_in, d_out]`,
    /// `bias` `[d_out]`, `lora_a` `[d_in, rank]`, `lora_b` `[rank, d_out]`.
    fn fused_lora_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        lora_a: FloatTensor<Self>,
        lora_b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;
}

impl FusedOps for Flex {
    fn fused_gelu(x: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        let Some(input) = f32_slice(&x) else {
            return Flex::gelu(x);
        };
        let mut out = vec![0.0; input.len()];
        kernels::gelu(input, &mut out);
        from_vec(out, &x)
    }

    fn fused_softmax(x: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        let row_len = last_dim(&x);
        let Some(input) = f32_slice(&x) else {
            let dim = rank(&x) - 1;
            return Flex::softmax(x, dim);
        };
        let mut out = input.to_vec();
        kernels::softmax_rows(&mut out, row_len);
        from_vec(out, &x)
    }

    fn fused_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
    ) -> FlexTensor {
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        match (f32_slice(&x), f32_slice(&gamma), f32_slice(&beta)) {
            (Some(input), Some(g), Some(b)) => {
                let mut out = vec![0.0; input.len()];
                kernels::layer_norm(input, g, b, epsilon, &mut out);
                from_vec(out, &x)
            }
            _ => Flex::layer_norm(x, gamma, Some(beta), epsilon.into()),
        }
    }

    fn fused_qkv_attention(qkv: FlexTensor, num_heads: usize, scale: f32) -> FlexTensor {
        let qkv = contiguous(qkv);
        let shape = qkv_shape(&qkv, num_heads);
        let mut out = vec![0.0; shape.batch * shape.tokens * shape.heads * shape.head_dim];
        attention::forward(f32s(&qkv), &mut out, None, shape, scale);
        from_vec_shaped(out, qkv_output_shape(shape))
    }

    fn fused_lora_linear(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        lora_a: FlexTensor,
        lora_b: FlexTensor,
        scale: f32,
    ) -> FlexTensor {
        linear(x, effective_weight(weight, lora_a, lora_b, scale), bias)
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary_node::<C>(x, Flex::fused_gelu, Keep::Input, gelu_backward)
    }

    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary_node::<C>(x, Flex::fused_softmax, Keep::Output, softmax_backward)
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNormBackward;

        impl Backward<Flex, 3> for LayerNormBackward {
            /// The input, `gamma` and `epsilon`.
            type State = (FlexTensor, FlexTensor, f32);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (x, gamma, epsilon) = ops.state;
                let grad = grads.consume::<Flex>(&ops.node);
                let [dx, dgamma, dbeta] = layer_norm_backward(x, gamma, grad, epsilon);
                for (parent, grad) in ops.parents.into_iter().zip([dx, dgamma, dbeta]) {
                    if let Some(parent) = parent {
                        grads.register::<Flex>(parent.id, grad);
                    }
                }
            }
        }

        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        match LayerNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (x.clone(), gamma.clone(), epsilon);
                prep.finish(state, Flex::fused_layer_norm(x, gamma, beta, epsilon))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::fused_layer_norm(x, gamma, beta, epsilon))
            }
        }
    }

    fn fused_qkv_attention(
        qkv: FloatTensor<Self>,
        num_heads: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        match QkvAttentionBackward
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let qkv = contiguous(qkv.into_primitive());
                let shape = qkv_shape(&qkv, num_heads);
                let mut out = vec![0.0; shape.batch * shape.tokens * shape.heads * shape.head_dim];
                let mut probs = vec![0.0; probs_len(shape)];
                attention::forward(f32s(&qkv), &mut out, Some(&mut probs), shape, scale);
                let probs = from_vec_shaped(probs, [probs_len(shape)]);
                let out = from_vec_shaped(out, qkv_output_shape(shape));
                prep.finish((qkv, probs, num_heads, scale), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fused_qkv_attention(
                qkv.into_primitive(),
                num_heads,
                scale,
            )),
        }
    }

    fn fused_lora_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        lora_a: FloatTensor<Self>,
        lora_b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let nodes = [
            x.node(),
            weight.node(),
            bias.node(),
            lora_a.node(),
            lora_b.node(),
        ];
        let (x, weight, bias, lora_a, lora_b) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
            lora_a.into_primitive(),
            lora_b.into_primitive(),
        );
        match LoraLinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let effective = effective_weight(weight, lora_a.clone(), lora_b.clone(), scale);
                let output = linear(x.clone(), effective.clone(), bias);
                prep.finish((x, effective, lora_a, lora_b, scale), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fused_lora_linear(
                x, weight, bias, lora_a, lora_b, scale,
            )),
        }
    }
}

/// The packed attention's backward node.
#[derive(Debug)]
struct QkvAttentionBackward;

impl Backward<Flex, 1> for QkvAttentionBackward {
    /// `qkv` (contiguous), the attention probabilities, the number of heads and the scale.
    type State = (FlexTensor, FlexTensor, usize, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (qkv, probs, num_heads, scale) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let grad = contiguous(grad);
            let shape = qkv_shape(&qkv, num_heads);
            let mut dqkv = vec![0.0; f32s(&qkv).len()];
            attention::backward(
                f32s(&qkv),
                f32s(&probs),
                f32s(&grad),
                &mut dqkv,
                shape,
                scale,
            );
            from_vec(dqkv, &qkv)
        });
    }
}

/// The sizes of a packed `[batch, tokens, 3·dim]` attention input.
fn qkv_shape(qkv: &FlexTensor, heads: usize) -> QkvShape {
    let shape = qkv.layout().shape();
    QkvShape {
        batch: shape[0],
        tokens: shape[1],
        heads,
        head_dim: shape[2] / (3 * heads),
    }
}

fn qkv_output_shape(shape: QkvShape) -> [usize; 3] {
    [shape.batch, shape.tokens, shape.heads * shape.head_dim]
}

fn probs_len(shape: QkvShape) -> usize {
    shape.batch * shape.heads * shape.tokens * shape.tokens
}

/// The elements of a contiguous tensor that [`super::qkv_attention`] has checked is `f32`.
fn f32s(tensor: &FlexTensor) -> &[f32] {
    f32_slice(tensor).expect("fused::qkv_attention routes only contiguous f32 tensors here")
}

/// The LoRA layer's backward node: parents `x`, `weight`, `bias`, `lora_a`, `lora_b`.
#[derive(Debug)]
struct LoraLinearBackward;

impl Backward<Flex, 5> for LoraLinearBackward {
    /// `x`, the effective weight `W + s·A·B`, `A`, `B` and `s`.
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f32);

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, lora_a, lora_b, scale) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let t = Flex::float_transpose;
        // Through the effective weight, `dx` is one product instead of the frozen layer's and
        // the adapter's, added.
        let dx = || Flex::float_matmul(grad.clone(), t(weight.clone()));
        let dweight = || Flex::float_matmul(t(x.clone()), grad.clone());
        let dbias = || {
            let d_output = last_dim(&grad);
            Flex::float_reshape(Flex::float_sum_dim(grad.clone(), 0), [d_output].into())
        };
        // dA = xᵀ·(g·(s·B)ᵀ), dB = s·(x·A)ᵀ·g: rank-sized products only.
        let da = || {
            let scaled_b = Flex::float_mul_scalar(lora_b.clone(), scale.into());
            Flex::float_matmul(t(x.clone()), Flex::float_matmul(grad.clone(), t(scaled_b)))
        };
        let db = || {
            let down = Flex::float_matmul(x.clone(), lora_a.clone());
            Flex::float_mul_scalar(Flex::float_matmul(t(down), grad.clone()), scale.into())
        };
        let gradients: [&dyn Fn() -> FlexTensor; 5] = [&dx, &dweight, &dbias, &da, &db];
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(parent) = parent {
                grads.register::<Flex>(parent.id, gradient());
            }
        }
    }
}

/// `W + s·A·B`: `[d_in, d_out]`, far smaller than the `[tokens, d_out]` product `(x·A)·B` that
/// the unfused layer writes and then adds.
fn effective_weight(
    weight: FlexTensor,
    lora_a: FlexTensor,
    lora_b: FlexTensor,
    scale: f32,
) -> FlexTensor {
    let update = Flex::float_matmul(lora_a, Flex::float_mul_scalar(lora_b, scale.into()));
    Flex::float_add(weight, update)
}

/// `x·weight + bias`, the bias added in place over all cores.
fn linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
    let mut output = Flex::float_matmul(x, weight);
    let bias = contiguous(bias);
    let packed = output.is_contiguous() && output.layout().start_offset() == 0;
    if packed
        && output.dtype() == DType::F32
        && let (Some(bias), Some(out)) = (f32_slice(&bias), output.try_storage_mut::<f32>())
        && !bias.is_empty()
        && out.len() % bias.len() == 0
    {
        kernels::add_rows(out, bias);
        return output;
    }
    let d_output = last_dim(&bias);
    Flex::float_add(output, Flex::float_reshape(bias, [1, d_output].into()))
}

/// Which tensor a one-input op's backward needs.
#[derive(Debug, Clone, Copy)]
enum Keep {
    Input,
    Output,
}

/// The backward node of a one-input op: `grad_in = backward(kept, grad_out)`.
#[derive(Debug)]
struct UnaryBackward(fn(FlexTensor, FlexTensor) -> FlexTensor);

impl Backward<Flex, 1> for UnaryBackward {
    /// The kept input or output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let kept = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| (self.0)(kept, grad));
    }
}

/// Runs `forward` on Flex and, when `x` is tracked, records one node whose backward is
/// `backward(kept, grad)`.
fn unary_node<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    forward: fn(FlexTensor) -> FlexTensor,
    keep: Keep,
    backward: fn(FlexTensor, FlexTensor) -> FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>> {
    let node = UnaryBackward(backward)
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful();
    match node {
        OpsKind::Tracked(prep) => {
            let input = x.into_primitive();
            match keep {
                Keep::Input => prep.finish(input.clone(), forward(input)),
                Keep::Output => {
                    let output = forward(input);
                    prep.finish(output.clone(), output)
                }
            }
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive())),
    }
}

/// `grad · gelu'(x)`.
fn gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let (x, grad) = (contiguous(x), contiguous(grad));
    match (f32_slice(&x), f32_slice(&grad)) {
        (Some(input), Some(grad_slice)) if input.len() == grad_slice.len() => {
            let mut out = vec![0.0; input.len()];
            kernels::gelu_backward(input, grad_slice, &mut out);
            from_vec(out, &x)
        }
        _ => Flex::gelu_backward(x, grad),
    }
}

/// `y ⊙ (grad − Σ_last grad ⊙ y)` from the softmax output `y`.
fn softmax_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let (y, grad) = (contiguous(y), contiguous(grad));
    let row_len = last_dim(&y);
    match (f32_slice(&y), f32_slice(&grad)) {
        (Some(output), Some(grad_slice)) if output.len() == grad_slice.len() => {
            let mut out = grad_slice.to_vec();
            kernels::softmax_rows_backward(output, &mut out, row_len, 1.0);
            from_vec(out, &y)
        }
        _ => {
            let dim = rank(&y) - 1;
            let dot = Flex::float_sum_dim(Flex::float_mul(grad.clone(), y.clone()), dim);
            Flex::float_mul(y, Flex::float_sub(grad, dot))
        }
    }
}

/// `[dx, dgamma, dbeta]` of LayerNorm from its input, `gamma` and the output gradient.
/// [`super::layer_norm`] routes only `f32` tensors here.
fn layer_norm_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    grad: FlexTensor,
    epsilon: f32,
) -> [FlexTensor; 3] {
    let (x, gamma, grad) = (contiguous(x), contiguous(gamma), contiguous(grad));
    let (Some(input), Some(g), Some(grad_slice)) =
        (f32_slice(&x), f32_slice(&gamma), f32_slice(&grad))
    else {
        unreachable!("fused::layer_norm takes the fused path for f32 tensors only");
    };
    let mut dx = vec![0.0; input.len()];
    let (dgamma, dbeta) = kernels::layer_norm_backward(input, g, grad_slice, epsilon, &mut dx);
    [
        from_vec(dx, &x),
        from_vec(dgamma, &gamma),
        from_vec(dbeta, &gamma),
    ]
}

fn rank(tensor: &FlexTensor) -> usize {
    tensor.layout().shape().num_dims()
}

fn last_dim(tensor: &FlexTensor) -> usize {
    tensor.layout().shape()[rank(tensor) - 1]
}

/// The tensor itself when it is a contiguous view from its buffer's start, else a packed copy.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.is_contiguous() && tensor.layout().start_offset() == 0 {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The elements of a contiguous `f32` tensor; `None` for other dtypes (which take Burn's path).
fn f32_slice(tensor: &FlexTensor) -> Option<&[f32]> {
    match tensor.dtype() {
        DType::F32 => tensor.as_slice::<f32>(),
        _ => None,
    }
}

/// A tensor of `like`'s shape holding `values`.
fn from_vec(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, like.layout().shape().clone()))
}

fn from_vec_shaped<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
