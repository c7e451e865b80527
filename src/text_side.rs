//! A model folder's text side as a run uses it: the tokenizer, the chat template the run
//! chose for it, and the generation config (stop ids, sampling defaults). Loaded together
//! from a Hugging Face folder and saved together beside the weights, so a saved folder
//! advertises the template it was trained with and stops where it was trained to.

use std::path::{Path, PathBuf};

use crate::config::ChatConfig;
use crate::generation_config::GenerationConfig;
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::Result;

#[derive(Clone, Debug)]
pub struct TextSide {
    /// Carries the chat template that `save` writes.
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub generation: GenerationConfig,
}

impl TextSide {
    /// The folder's tokenizer and generation config, with the template `chat` chooses,
    /// which the tokenizer then saves.
    pub fn load(dir: &Path, chat: &ChatConfig) -> Result<TextSide> {
        let tokenizer = Tokenizer::from_dir(dir)?;
        let template = ChatTemplate::choose(chat, &tokenizer, dir)?;
        let generation = GenerationConfig::load(dir, &tokenizer)?;
        Ok(TextSide::new(tokenizer, template, generation))
    }

    /// For stages that render no prompt (pretraining): texts are used as given, and the
    /// folder's own chat template is saved unchanged.
    pub fn load_untemplated(dir: &Path) -> Result<TextSide> {
        let tokenizer = Tokenizer::from_dir(dir)?;
        let generation = GenerationConfig::load(dir, &tokenizer)?;
        Ok(TextSide {
            tokenizer,
            template: ChatTemplate::None,
            generation,
        })
    }

    /// `template` becomes the tokenizer's saved chat template.
    pub fn new(
        mut tokenizer: Tokenizer,
        template: ChatTemplate,
        generation: GenerationConfig,
    ) -> TextSide {
        let saved = match &template {
            ChatTemplate::Jinja(t) => Some((t.source().to_string(), PathBuf::from(t.origin()))),
            ChatTemplate::None => None,
        };
        tokenizer.set_chat_template(saved);
        TextSide {
            tokenizer,
            template,
            generation,
        }
    }

    /// `tokenizer.json`, `tokenizer_config.json` (with the chat template),
    /// `special_tokens_map.json` and `generation_config.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.tokenizer.save(dir)?;
        self.generation.save(dir, &self.tokenizer)
    }

    /// Every id that ends a response.
    pub fn eos_token_ids(&self) -> &[i64] {
        self.generation.eos_token_ids()
    }

    /// The ids of a prompt rendered with this side's template.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<i64>> {
        self.template.encode_prompt(&self.tokenizer, text)
    }
}
