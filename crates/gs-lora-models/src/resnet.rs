//! timm's ResNet with bottleneck blocks and frozen batch norm, returning the feature maps of
//! its stages: Deformable DETR's backbone (`model.backbone.conv_encoder.model.*`).

use burn::module::{Module, Param};
use burn::nn::Relu;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::Tensor;

use crate::error::{ModelError, Result};
use crate::weights::{ConvShape, Init, Weights};

/// Epsilon of the frozen batch norm (torchvision's `FrozenBatchNorm2d`, as Deformable DETR).
const BATCH_NORM_EPS: f64 = 1e-5;

/// The sizes of a bottleneck ResNet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Stem output channels (64 in ResNet-50).
    pub stem_width: usize,
    /// Bottleneck width of each stage; a stage outputs 4× its width (64, 128, 256, 512).
    pub widths: Vec<usize>,
    /// Blocks per stage (3, 4, 6, 3 in ResNet-50).
    pub depths: Vec<usize>,
}

impl ResNetConfig {
    /// ResNet-50.
    pub fn resnet50() -> Self {
        Self {
            in_channels: 3,
            stem_width: 64,
            widths: vec![64, 128, 256, 512],
            depths: vec![3, 4, 6, 3],
        }
    }

    /// Output channels of each stage.
    pub fn stage_channels(&self) -> Vec<usize> {
        self.widths.iter().map(|w| 4 * w).collect()
    }
}

/// Batch norm with fixed statistics and affine parameters, all frozen.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d {
    /// Scale `γ` `[C]`.
    pub weight: Param<Tensor<1>>,
    /// Shift `β` `[C]`.
    pub bias: Param<Tensor<1>>,
    /// Running mean `[C]`.
    pub running_mean: Param<Tensor<1>>,
    /// Running variance `[C]`.
    pub running_var: Param<Tensor<1>>,
}

impl FrozenBatchNorm2d {
    fn load(mut weights: Weights, channels: usize) -> Result<Self> {
        Ok(Self {
            weight: weights.param("weight", [channels], Init::ChannelNormScale)?,
            bias: weights.param("bias", [channels], Init::Bias)?,
            running_mean: weights.param("running_mean", [channels], Init::RunningMean)?,
            running_var: weights.param("running_var", [channels], Init::RunningVar)?,
        })
    }

    /// `(x − mean) / √(var + ε) · γ + β` per channel.
    ///
    /// # Shapes
    /// `[N, C, H, W] → [N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let scale = self.weight.val() / self.running_var.val().add_scalar(BATCH_NORM_EPS).sqrt();
        let shift = self.bias.val() - self.running_mean.val() * scale.clone();
        let per_channel = |t: Tensor<1>| t.unsqueeze_dims::<4>(&[0, 2, 3]);
        x * per_channel(scale) + per_channel(shift)
    }
}

/// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + shortcut(x))`, the stride on the
/// 3×3 convolution (timm, torchvision v1.5).
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 reduction.
    pub conv1: Conv2d,
    /// Its norm.
    pub bn1: FrozenBatchNorm2d,
    /// 3×3, strided in a stage's first block.
    pub conv2: Conv2d,
    /// Its norm.
    pub bn2: FrozenBatchNorm2d,
    /// 1×1 expansion to 4× the width.
    pub conv3: Conv2d,
    /// Its norm.
    pub bn3: FrozenBatchNorm2d,
    /// Projection shortcut (1×1 convolution and norm) where the shape changes.
    pub downsample: Option<(Conv2d, FrozenBatchNorm2d)>,
    /// ReLU.
    pub act: Relu,
}

impl Bottleneck {
    fn load(mut weights: Weights, [d_input, width]: [usize; 2], stride: usize) -> Result<Self> {
        let d_output = 4 * width;
        // Padding `k / 2` keeps the size at stride 1.
        let conv = |channels, kernel, stride| ConvShape {
            channels,
            kernel,
            stride,
            padding: kernel / 2,
        };
        let downsample = match stride != 1 || d_input != d_output {
            true => Some((
                weights
                    .pp("downsample.0")
                    .conv2d_no_bias(conv([d_input, d_output], 1, stride))?,
                FrozenBatchNorm2d::load(weights.pp("downsample.1"), d_output)?,
            )),
            false => None,
        };
        Ok(Self {
            conv1: weights
                .pp("conv1")
                .conv2d_no_bias(conv([d_input, width], 1, 1))?,
            bn1: FrozenBatchNorm2d::load(weights.pp("bn1"), width)?,
            conv2: weights
                .pp("conv2")
                .conv2d_no_bias(conv([width, width], 3, stride))?,
            bn2: FrozenBatchNorm2d::load(weights.pp("bn2"), width)?,
            conv3: weights
                .pp("conv3")
                .conv2d_no_bias(conv([width, d_output], 1, 1))?,
            bn3: FrozenBatchNorm2d::load(weights.pp("bn3"), d_output)?,
            downsample,
            act: Relu::new(),
        })
    }

    /// # Shapes
    /// `[N, C, H, W] → [N, 4·width, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some((conv, norm)) => norm.forward(conv.forward(x.clone())),
            None => x.clone(),
        };
        let y = self.act.forward(self.bn1.forward(self.conv1.forward(x)));
        let y = self.act.forward(self.bn2.forward(self.conv2.forward(y)));
        let y = self.bn3.forward(self.conv3.forward(y));
        self.act.forward(y + shortcut)
    }
}

/// A bottleneck ResNet without its classifier.
#[derive(Module, Debug)]
pub struct ResNet {
    /// 7×7 stride-2 stem convolution.
    pub conv1: Conv2d,
    /// Its norm.
    pub bn1: FrozenBatchNorm2d,
    /// ReLU.
    pub act: Relu,
    /// 3×3 stride-2 max pooling.
    pub maxpool: MaxPool2d,
    /// The stages (`layer1` … `layer4`), the first unstrided, the others stride 2.
    pub stages: Vec<Vec<Bottleneck>>,
}

impl ResNet {
    /// Loads timm names from `weights` (`conv1`, `layer1.0.conv1`, …; the root of a bare timm
    /// checkpoint).
    ///
    /// # Errors
    /// A config with no stage or mismatched widths and depths, or a missing or mis-shaped tensor.
    pub fn load(mut weights: Weights, config: &ResNetConfig) -> Result<Self> {
        if config.widths.is_empty() || config.widths.len() != config.depths.len() {
            return Err(ModelError::InvalidConfig(format!(
                "a ResNet needs one width per stage, found widths {:?} and depths {:?}",
                config.widths, config.depths
            )));
        }
        let stem = ConvShape {
            channels: [config.in_channels, config.stem_width],
            kernel: 7,
            stride: 2,
            padding: 3,
        };
        let conv1 = weights.pp("conv1").conv2d_no_bias(stem)?;
        let bn1 = FrozenBatchNorm2d::load(weights.pp("bn1"), config.stem_width)?;
        let mut d_input = config.stem_width;
        let mut stages = Vec::with_capacity(config.widths.len());
        for (s, (&width, &depth)) in config.widths.iter().zip(&config.depths).enumerate() {
            let mut stage = weights.pp(format!("layer{}", s + 1));
            let blocks = (0..depth)
                .map(|b| {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let block = Bottleneck::load(stage.pp(b), [d_input, width], stride);
                    d_input = 4 * width;
                    block
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(blocks);
        }
        Ok(Self {
            conv1,
            bn1,
            act: Relu::new(),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            stages,
        })
    }

    /// The output of every stage, strides 4, 8, 16, 32.
    ///
    /// # Shapes
    /// `[N, C_in, H, W] → [[N, 4·width_s, H/2^(s+2), W/2^(s+2)]; stages]` (sizes rounded up)
    pub fn forward(&self, pixels: Tensor<4>) -> Vec<Tensor<4>> {
        let x = self
            .act
            .forward(self.bn1.forward(self.conv1.forward(pixels)));
        let mut x = self.maxpool.forward(x);
        let mut features = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            x = stage.iter().fold(x, |x, block| block.forward(x));
            features.push(x.clone());
        }
        features
    }
}
