//! The decoder's object queries: what a query source hands the decoder, and the learned queries
//! of single-stage models.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

use crate::error::Result;
use crate::weights::{Init, Weights};

/// The decoder's inputs: one query per object slot.
#[derive(Debug, Clone)]
pub struct Queries {
    /// Query positions `[N, K, d]`.
    pub position: Tensor<3>,
    /// Query contents `[N, K, d]`.
    pub content: Tensor<3>,
    /// Reference points `(x, y)` `[N, K, 2]`, or boxes `(cx, cy, w, h)` `[N, K, 4]` from
    /// proposals (no gradient); after the sigmoid.
    pub reference: Tensor<3>,
}

/// Learned object queries: the position and content halves of one embedding, and reference
/// points read off the position half.
#[derive(Module, Debug)]
pub struct LearnedQueries {
    /// Object queries `[Q, 2d]`: position half, then content half.
    pub query_position_embeddings: Param<Tensor<2>>,
    /// Query position → reference point `(x, y)` (before the sigmoid).
    pub reference_points: Linear,
}

impl LearnedQueries {
    /// Loads `query_position_embeddings.weight` `[Q, 2d]` and `reference_points` (`d → 2`).
    pub(crate) fn load(mut weights: Weights, num_queries: usize, d: usize) -> Result<Self> {
        Ok(Self {
            query_position_embeddings: weights.pp("query_position_embeddings").param(
                "weight",
                [num_queries, 2 * d],
                Init::Embedding,
            )?,
            reference_points: weights.pp("reference_points").linear(d, 2)?,
        })
    }

    /// The same `Q` queries for each of `batch` images, with reference points `[N, Q, 2]`.
    pub fn forward(&self, batch: usize) -> Queries {
        let embeddings = self.query_position_embeddings.val();
        let [queries, width] = embeddings.dims();
        let d = width / 2;
        let half = |start| {
            embeddings
                .clone()
                .narrow(1, start, d)
                .unsqueeze::<3>()
                .expand([batch, queries, d])
        };
        let (position, content) = (half(0), half(d));
        let reference = sigmoid(self.reference_points.forward(position.clone()));
        Queries {
            position,
            content,
            reference,
        }
    }
}
