//! Deformable DETR's box head.

use burn::module::Module;
use burn::nn::{Linear, Relu};
use burn::tensor::Tensor;

use crate::error::Result;
use crate::weights::{Init, Weights};

/// The box head: three Linears with ReLU between them, `d → d → d → 4`.
#[derive(Module, Debug)]
pub struct BoxHead {
    /// The Linears.
    pub layers: Vec<Linear>,
    /// ReLU.
    pub act: Relu,
}

impl BoxHead {
    /// Loads `layers.{0,1,2}` (`d → d → d → 4`). The last starts at zero in a fresh detector,
    /// so that its boxes start at the reference points.
    pub(crate) fn load(mut weights: Weights, d: usize) -> Result<Self> {
        let mut layers = weights.pp("layers");
        Ok(Self {
            layers: vec![
                layers.pp(0).linear(d, d)?,
                layers.pp(1).linear(d, d)?,
                layers
                    .pp(2)
                    .linear_of(d, 4, Init::ZeroLinear, Some(Init::Bias))?,
            ],
            act: Relu::new(),
        })
    }

    /// # Shapes
    /// `[N, Q, d] → [N, Q, 4]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(x, |x, (i, layer)| {
            let y = layer.forward(x);
            if i < last { self.act.forward(y) } else { y }
        })
    }
}
