//! The loader models read their parameters through, in the style of candle's `VarBuilder`.

use std::fmt::Display;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    GroupNorm, GroupNormConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};

use super::{Init, ParamSource};
use crate::error::Result;

/// A parameter that never receives gradients (everything but the adapters, in GS-LoRA).
pub(crate) fn frozen<const D: usize>(tensor: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(tensor).set_require_grad(false)
}

/// The shape of a 2-D convolution: square kernel, stride and zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Kernel side.
    pub kernel: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl ConvShape {
    /// A patch embedding: kernel = stride = `patch`, no padding.
    pub fn patch(channels: [usize; 2], patch: usize) -> Self {
        Self {
            channels,
            kernel: patch,
            stride: patch,
            padding: 0,
        }
    }

    /// A zero convolution of this shape, to be filled from a source.
    fn zeros(self, bias: bool, device: &Device) -> Conv2d {
        let Self {
            channels,
            kernel,
            stride,
            padding,
        } = self;
        Conv2dConfig::new(channels, [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(
                padding, padding, padding, padding,
            ))
            .with_bias(bias)
            .with_initializer(Initializer::Zeros)
            .init(device)
    }
}

/// A [`ParamSource`] seen from one module: the key prefix of its parameters and the device
/// they load onto. [`pp`](Self::pp) descends into a submodule; the builders read a module's
/// parameters under the prefix (PyTorch names and layout) and return it frozen.
pub struct Weights<'a> {
    source: &'a mut dyn ParamSource,
    prefix: String,
    device: &'a Device,
}

impl<'a> Weights<'a> {
    /// The root of `source` (no prefix), loading onto `device`.
    pub fn new(source: &'a mut dyn ParamSource, device: &'a Device) -> Self {
        Self {
            source,
            prefix: String::new(),
            device,
        }
    }

    /// The submodule `name`: keys `{prefix}.{name}.*`.
    pub fn pp(&mut self, name: impl Display) -> Weights<'_> {
        Weights {
            prefix: self.key(&name.to_string()),
            source: &mut *self.source,
            device: self.device,
        }
    }

    /// Whether the source has the tensor `name` under the prefix.
    pub fn contains(&self, name: &str) -> bool {
        self.source.contains(&self.key(name))
    }

    fn key(&self, name: &str) -> String {
        match self.prefix.as_str() {
            "" => name.to_string(),
            prefix => format!("{prefix}.{name}"),
        }
    }

    /// The tensor `name` of `shape`, a parameter of kind `init`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor (naming the key and both shapes).
    pub fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Tensor<D>> {
        let data = self.source.tensor(&self.key(name), &shape, init)?;
        Ok(Tensor::from_data(data, self.device))
    }

    /// As [`tensor`](Self::tensor), as a frozen parameter.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn param<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<D>>> {
        Ok(frozen(self.tensor(name, shape, init)?))
    }

    /// A Linear `d_input → d_output` from `weight` `[d_output, d_input]` and `bias`.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn linear(&mut self, d_input: usize, d_output: usize) -> Result<Linear> {
        self.linear_of(d_input, d_output, Init::Linear, Some(Init::Bias))
    }

    /// A Linear `d_input → d_output` from `weight` alone.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn linear_no_bias(&mut self, d_input: usize, d_output: usize) -> Result<Linear> {
        self.linear_of(d_input, d_output, Init::Linear, None)
    }

    /// A Linear whose weight is of kind `weight` and whose bias, if any, of kind `bias`.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn linear_of(
        &mut self,
        d_input: usize,
        d_output: usize,
        weight: Init,
        bias: Option<Init>,
    ) -> Result<Linear> {
        let mut linear = LinearConfig::new(d_input, d_output)
            .with_bias(bias.is_some())
            .with_initializer(Initializer::Zeros)
            .init(self.device);
        // PyTorch stores [out, in]; Burn's Linear is [in, out].
        let weight = self.tensor("weight", [d_output, d_input], weight)?;
        linear.weight = frozen(weight.transpose());
        linear.bias = bias
            .map(|init| self.param("bias", [d_output], init))
            .transpose()?;
        Ok(linear)
    }

    /// A LayerNorm over `dim` features from `weight` and `bias`.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn layer_norm(&mut self, dim: usize, epsilon: f64) -> Result<LayerNorm> {
        let mut norm = LayerNormConfig::new(dim)
            .with_epsilon(epsilon)
            .init(self.device);
        norm.gamma = self.param("weight", [dim], Init::Scale)?;
        norm.beta = Some(self.param("bias", [dim], Init::Bias)?);
        Ok(norm)
    }

    /// A group norm of `groups` groups over `channels` from `weight` and `bias`.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn group_norm(&mut self, groups: usize, channels: usize) -> Result<GroupNorm> {
        let mut norm = GroupNormConfig::new(groups, channels).init(self.device);
        norm.gamma = Some(self.param("weight", [channels], Init::ChannelNormScale)?);
        norm.beta = Some(self.param("bias", [channels], Init::Bias)?);
        Ok(norm)
    }

    /// A convolution from `weight` `[out, in, k, k]` and `bias`.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn conv2d(&mut self, shape: ConvShape) -> Result<Conv2d> {
        self.conv2d_of(shape, true)
    }

    /// A convolution from `weight` `[out, in, k, k]` alone.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn conv2d_no_bias(&mut self, shape: ConvShape) -> Result<Conv2d> {
        self.conv2d_of(shape, false)
    }

    fn conv2d_of(&mut self, shape: ConvShape, bias: bool) -> Result<Conv2d> {
        let mut conv = shape.zeros(bias, self.device);
        let ([d_input, d_output], k) = (shape.channels, shape.kernel);
        conv.weight = self.param("weight", [d_output, d_input, k, k], Init::Conv)?;
        if bias {
            conv.bias = Some(self.param("bias", [d_output], Init::Bias)?);
        }
        Ok(conv)
    }

    /// A patch embedding stored as a Linear over patches flattened in `(p1, p2, c)` order
    /// (`weight` `[d_output, patch·patch·channels]`, `bias`), as the equivalent convolution
    /// (kernel = stride = `patch`).
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn patch_linear_as_conv(
        &mut self,
        channels: usize,
        d_output: usize,
        patch: usize,
    ) -> Result<Conv2d> {
        let mut conv = ConvShape::patch([channels, d_output], patch).zeros(true, self.device);
        let weight = self.tensor("weight", [d_output, patch * patch * channels], Init::Linear)?;
        // W[d, (p1·P + p2)·C + c] = K[d, c, p1, p2]
        let kernel = weight
            .reshape([d_output, patch, patch, channels])
            .permute([0, 3, 1, 2]);
        conv.weight = frozen(kernel);
        conv.bias = Some(self.param("bias", [d_output], Init::Bias)?);
        Ok(conv)
    }
}
