//! timm's ResNet with bottleneck blocks and frozen batch norm, returning the feature maps of
//! its stages: Deformable DETR's backbone (`model.backbone.conv_encoder.model.*`).

use burn::module::{Module, Param};
use burn::nn::Relu;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::weights::{ConvShape, ParamSource, frozen, load, load_conv2d};

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
    fn load(
        source: &mut impl ParamSource,
        prefix: &str,
        channels: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut get = |name: &str| -> Result<Param<Tensor<1>>> {
            Ok(frozen(load(
                source,
                &format!("{prefix}.{name}"),
                [channels],
                device,
            )?))
        };
        Ok(Self {
            weight: get("weight")?,
            bias: get("bias")?,
            running_mean: get("running_mean")?,
            running_var: get("running_var")?,
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
    fn load(
        source: &mut impl ParamSource,
        prefix: &str,
        [d_input, width]: [usize; 2],
        stride: usize,
        device: &Device,
    ) -> Result<Self> {
        let d_output = 4 * width;
        let conv = |source: &mut _, name: &str, channels, kernel, stride| {
            let padding = kernel / 2;
            let shape = ConvShape {
                channels,
                kernel,
                stride,
                padding,
            };
            load_conv2d(source, &format!("{prefix}.{name}"), shape, false, device)
        };
        let norm = |source: &mut _, name: &str, channels| {
            FrozenBatchNorm2d::load(source, &format!("{prefix}.{name}"), channels, device)
        };
        let downsample = match stride != 1 || d_input != d_output {
            true => Some((
                conv(source, "downsample.0", [d_input, d_output], 1, stride)?,
                norm(source, "downsample.1", d_output)?,
            )),
            false => None,
        };
        Ok(Self {
            conv1: conv(source, "conv1", [d_input, width], 1, 1)?,
            bn1: norm(source, "bn1", width)?,
            conv2: conv(source, "conv2", [width, width], 3, stride)?,
            bn2: norm(source, "bn2", width)?,
            conv3: conv(source, "conv3", [width, d_output], 1, 1)?,
            bn3: norm(source, "bn3", d_output)?,
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
    /// Loads timm names under `prefix` (`{prefix}.conv1`, `{prefix}.layer1.0.conv1`, …; an
    /// empty prefix for a bare timm checkpoint).
    ///
    /// # Errors
    /// A config with no stage or mismatched widths and depths, or a missing or mis-shaped tensor.
    pub fn load(
        source: &mut impl ParamSource,
        prefix: &str,
        config: &ResNetConfig,
        device: &Device,
    ) -> Result<Self> {
        if config.widths.is_empty() || config.widths.len() != config.depths.len() {
            return Err(ModelError::InvalidConfig(format!(
                "a ResNet needs one width per stage, found widths {:?} and depths {:?}",
                config.widths, config.depths
            )));
        }
        let key = |name: &str| match prefix {
            "" => name.to_string(),
            _ => format!("{prefix}.{name}"),
        };
        let stem = ConvShape {
            channels: [config.in_channels, config.stem_width],
            kernel: 7,
            stride: 2,
            padding: 3,
        };
        let conv1 = load_conv2d(source, &key("conv1"), stem, false, device)?;
        let bn1 = FrozenBatchNorm2d::load(source, &key("bn1"), config.stem_width, device)?;
        let mut d_input = config.stem_width;
        let mut stages = Vec::with_capacity(config.widths.len());
        for (s, (&width, &depth)) in config.widths.iter().zip(&config.depths).enumerate() {
            let blocks = (0..depth)
                .map(|b| {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let block_prefix = key(&format!("layer{}.{b}", s + 1));
                    let block =
                        Bottleneck::load(source, &block_prefix, [d_input, width], stride, device);
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
