//! Multi-head self-attention straight from a packed `[q | k | v]` projection.
//!
//! Each head's `q`, `k`, `v` are strided views of the `[tokens, 3·dim]` rows, and each head's
//! output is a strided view of the `[tokens, dim]` result, so neither the split into heads nor
//! their merge is copied; a head's `[tokens, tokens]` scores stay in cache between the two
//! products around the softmax. Images run in parallel, heads one after another.

use rayon::prelude::*;

use super::gemm::{MatrixView, matmul};
use super::kernels::{softmax_rows_backward_serial, softmax_rows_serial};

/// The sizes of a packed attention: `qkv` is `[batch, tokens, 3, heads, head_dim]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QkvShape {
    pub(crate) batch: usize,
    pub(crate) tokens: usize,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
}

impl QkvShape {
    fn dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Elements of one image's `qkv` rows.
    fn qkv_len(&self) -> usize {
        self.tokens * 3 * self.dim()
    }

    /// Elements of one image's output rows.
    fn out_len(&self) -> usize {
        self.tokens * self.dim()
    }

    /// Elements of one head's scores.
    fn scores_len(&self) -> usize {
        self.tokens * self.tokens
    }

    /// `part` (0 = q, 1 = k, 2 = v) of `head` inside one image's `qkv` rows: `[tokens, head_dim]`.
    fn qkv_view(&self, part: usize, head: usize) -> MatrixView {
        let offset = part * self.dim() + head * self.head_dim;
        MatrixView::row_major(offset, self.tokens, self.head_dim, 3 * self.dim())
    }

    /// `head`'s columns of one image's output rows: `[tokens, head_dim]`.
    fn out_view(&self, head: usize) -> MatrixView {
        MatrixView::row_major(head * self.head_dim, self.tokens, self.head_dim, self.dim())
    }

    /// One head's `[tokens, tokens]` scores.
    fn scores_view(&self, head: usize) -> MatrixView {
        MatrixView::row_major(
            head * self.scores_len(),
            self.tokens,
            self.tokens,
            self.tokens,
        )
    }
}

/// `out = concat_heads(softmax(scale · q·kᵀ)·v)`: `qkv` `[batch, tokens, 3·dim]`, `out`
/// `[batch, tokens, dim]`. With `probs` (`[batch, heads, tokens, tokens]`) the attention
/// probabilities are kept there for the backward pass; without, each image uses scratch space.
pub(crate) fn forward(
    qkv: &[f32],
    out: &mut [f32],
    probs: Option<&mut [f32]>,
    shape: QkvShape,
    scale: f32,
) {
    let per_image_probs = shape.heads * shape.scores_len();
    let image = |((out, qkv), probs): ((&mut [f32], &[f32]), &mut [f32])| {
        for head in 0..shape.heads {
            let scores = shape.scores_view(head);
            let (q, k) = (shape.qkv_view(0, head), shape.qkv_view(1, head));
            matmul((probs, scores), (qkv, q), (qkv, k.t()), scale, false);
            let head_probs = &mut probs[scores.offset..scores.offset + shape.scores_len()];
            softmax_rows_serial(head_probs, shape.tokens);
            let v = shape.qkv_view(2, head);
            matmul(
                (out, shape.out_view(head)),
                (probs, scores),
                (qkv, v),
                1.0,
                false,
            );
        }
    };
    let images = out
        .par_chunks_mut(shape.out_len())
        .zip(qkv.par_chunks(shape.qkv_len()));
    match probs {
        Some(probs) => images
            .zip(probs.par_chunks_mut(per_image_probs))
            .for_each(image),
        None => images.for_each_init(
            || vec![0.0; per_image_probs],
            |scratch, images| image((images, scratch)),
        ),
    }
}

/// The gradient of [`forward`] with respect to `qkv`, written to `dqkv` (`[batch, tokens,
/// 3·dim]`), from `qkv`, the kept `probs` and the output gradient `grad` (`[batch, tokens,
/// dim]`). With `S = scale·q·kᵀ`, `P = softmax(S)`, `o = P·v`:
/// `dv = Pᵀ·do`, `dS = P ⊙ (do·vᵀ − rowsum(P ⊙ do·vᵀ))`, `dq = scale·dS·k`, `dk = scale·dSᵀ·q`.
pub(crate) fn backward(
    qkv: &[f32],
    probs: &[f32],
    grad: &[f32],
    dqkv: &mut [f32],
    shape: QkvShape,
    scale: f32,
) {
    let per_image_probs = shape.heads * shape.scores_len();
    dqkv.par_chunks_mut(shape.qkv_len())
        .zip(qkv.par_chunks(shape.qkv_len()))
        .zip(probs.par_chunks(per_image_probs))
        .zip(grad.par_chunks(shape.out_len()))
        .for_each_init(
            || vec![0.0; shape.scores_len()],
            |d_scores, (((dqkv, qkv), probs), grad)| {
                let scratch = MatrixView::row_major(0, shape.tokens, shape.tokens, shape.tokens);
                for head in 0..shape.heads {
                    let p = shape.scores_view(head);
                    let [q, k, v] = [0, 1, 2].map(|part| shape.qkv_view(part, head));
                    let d_out = shape.out_view(head);
                    matmul((dqkv, v), (probs, p.t()), (grad, d_out), 1.0, false);
                    matmul((d_scores, scratch), (grad, d_out), (qkv, v.t()), 1.0, false);
                    let head_probs = &probs[p.offset..p.offset + shape.scores_len()];
                    softmax_rows_backward_serial(head_probs, d_scores, shape.tokens, scale);
                    matmul((dqkv, q), (d_scores, scratch), (qkv, k), 1.0, false);
                    matmul((dqkv, k), (d_scores, scratch.t()), (qkv, q), 1.0, false);
                }
            },
        );
}
