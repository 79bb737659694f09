//! The image-path flags shared by `model preprocess` and `perception`: which reference's first
//! resize and which of transformers' processors an image goes through.

use std::path::{Path, PathBuf};

use spotlight::model::{ImageProcessor, PreResize, ProcessorKind};

/// Which image path to follow.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ImagePath {
    /// `spotlight eval` (PAPO-Eval: LLaMA-Factory's Qwen2-VL pre-resize, 768x768 cap).
    Eval,
    /// `spotlight train` / `sft` (VPPO-RL: EasyR1's `process_image` at the recipe's bounds).
    Train,
    /// transformers' processor alone (what `model logprobs` and `generate` use).
    Processor,
}

/// `--image-processor` / `--processor` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ProcessorArg {
    Slow,
    Fast,
}

impl From<ProcessorArg> for ProcessorKind {
    fn from(p: ProcessorArg) -> Self {
        match p {
            ProcessorArg::Slow => ProcessorKind::Slow,
            ProcessorArg::Fast => ProcessorKind::Fast,
        }
    }
}

/// `--images` values: the items' own images or a control.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ImageControlArg {
    /// The items' own images.
    AsIs,
    /// Every image replaced by a black image of the same size.
    Black,
    /// Each item shown another item's images (a seeded derangement within the benchmark).
    OtherItem,
}

impl From<ImageControlArg> for spotlight::eval::image_control::ImageControl {
    fn from(c: ImageControlArg) -> Self {
        use spotlight::eval::image_control::ImageControl;
        match c {
            ImageControlArg::AsIs => ImageControl::AsIs,
            ImageControlArg::Black => ImageControl::Black,
            ImageControlArg::OtherItem => ImageControl::OtherItem,
        }
    }
}

#[derive(clap::Args)]
pub struct ImagePathArgs {
    /// Which path to follow.
    #[arg(long = "for", value_enum, default_value = "eval")]
    pub path: ImagePath,
    /// Recipe whose `[image]` bounds and processor the `train` path uses.
    /// [default: recipes/vppo.toml]
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// The first resize's pixel cap instead of the path's (eval: 768x768; train: the recipe's).
    #[arg(long)]
    pub max_pixels: Option<u64>,
    /// Which of transformers' image processors to reproduce. [default: the path's: `slow`
    /// for eval and processor, the recipe's `[image] processor` (`fast`) for train]
    #[arg(long, value_enum)]
    pub processor: Option<ProcessorArg>,
}

impl ImagePathArgs {
    /// The first resize and the processor (the checkpoint's `preprocessor_config.json` in
    /// `dir`, or transformers' defaults without one) this path uses.
    pub fn resolve(&self, dir: &Path) -> anyhow::Result<(PreResize, ImageProcessor)> {
        let pre_path = dir.join("preprocessor_config.json");
        let mut processor = if pre_path.is_file() {
            ImageProcessor::from_file(&pre_path)?
        } else {
            ImageProcessor::default()
        };
        let pre_resize = match self.path {
            ImagePath::Eval => match self.max_pixels {
                Some(max_pixels) => PreResize::LlamaFactory {
                    min_pixels: 32 * 32,
                    max_pixels,
                },
                None => PreResize::EVAL,
            },
            ImagePath::Train => {
                let recipe_path = match &self.recipe {
                    Some(p) => p.clone(),
                    None => spotlight::bench::Registry::discover()?
                        .root
                        .join("recipes/vppo.toml"),
                };
                let recipe = spotlight::train::TrainRecipe::load(&recipe_path)?;
                let mut image = recipe.image.clone();
                if let Some(m) = self.max_pixels {
                    image.max_pixels = m as usize;
                }
                processor.kind = image.processor;
                image.pre_resize()
            }
            ImagePath::Processor => PreResize::None,
        };
        if let Some(kind) = self.processor {
            processor.kind = kind.into();
        }
        Ok((pre_resize, processor))
    }

    pub fn name(&self) -> &'static str {
        match self.path {
            ImagePath::Eval => "eval",
            ImagePath::Train => "train",
            ImagePath::Processor => "processor",
        }
    }
}
