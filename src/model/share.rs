//! A second model on the same base weights: [`Model::share`] gives PPO's generator,
//! reference and learner one copy of a LoRA policy's frozen weights per device, each with
//! adapters of its own.

use super::lora::{LoraPlan, Switch};
use super::{Backbone, Model};
use std::collections::HashMap;
use std::sync::Arc;
use tch::{nn, Tensor};

/// The new model's variables, by the storage of the old model's: trainable ones copied,
/// frozen ones shared. Tensors that are not variables (rope tables) are shared as they are.
/// Adapters take the new model's switch.
pub struct Tensors {
    map: HashMap<usize, Tensor>,
    pub switch: Arc<Switch>,
}

impl Tensors {
    /// The new model's tensor for one of the old model's.
    pub fn get(&self, t: &Tensor) -> Tensor {
        match self.map.get(&(t.data_ptr() as usize)) {
            Some(new) => new.shallow_clone(),
            None => t.shallow_clone(),
        }
    }

    pub fn opt(&self, t: &Option<Tensor>) -> Option<Tensor> {
        t.as_ref().map(|t| self.get(t))
    }
}

/// A layer rebuilt on the new model's tensors.
pub trait Share {
    fn share(&self, t: &Tensors) -> Self;
}

impl<T: Share> Share for Vec<T> {
    fn share(&self, t: &Tensors) -> Self {
        self.iter().map(|x| x.share(t)).collect()
    }
}

impl<T: Share> Share for Option<T> {
    fn share(&self, t: &Tensors) -> Self {
        self.as_ref().map(|x| x.share(t))
    }
}

impl Model {
    /// A model on the same frozen base weights (no copy) with its own copies of the
    /// trainable tensors (LoRA's adapters and a scalar head) and its own adapter switch.
    /// Only for models with LoRA: without it every weight trains and nothing is shared.
    pub fn share(&self) -> Model {
        let plan = self
            .lora
            .as_ref()
            .expect("only a LoRA model shares its base");
        let vs = nn::VarStore::new(self.vs.device());
        let root = vs.root();
        let trainable: Vec<String> = self.trainable().into_iter().map(|(n, _)| n).collect();
        let mut map = HashMap::new();
        let _guard = tch::no_grad_guard();
        for (name, old) in self.vs.variables() {
            let train = trainable.contains(&name);
            let new = match train {
                true => old.detach().copy(),
                false => old.shallow_clone(),
            };
            let (parent, leaf) = name.rsplit_once('.').unwrap_or(("", &name));
            let path = parent
                .split('.')
                .filter(|c| !c.is_empty())
                .fold(root.clone(), |p, c| p.sub(c));
            let new = path.add(leaf, new, train);
            map.insert(old.data_ptr() as usize, new);
        }
        let tensors = Tensors {
            map,
            switch: Switch::new(),
        };
        let plan = LoraPlan {
            config: plan.config.clone(),
            switch: tensors.switch.clone(),
        };
        Model {
            backbone: self.backbone.share(&tensors),
            vs,
            lora: Some(plan),
            source: self.source.clone(),
            lm_head: tensors.opt(&self.lm_head),
            score: tensors.opt(&self.score),
            score_bias: self.score_bias,
            head: self.head,
            config: self.config.clone(),
            raw_config: self.raw_config.clone(),
        }
    }
}

impl Share for Backbone {
    fn share(&self, t: &Tensors) -> Self {
        match self {
            Backbone::Gpt2(m) => Backbone::Gpt2(m.share(t)),
            Backbone::Llama(m) => Backbone::Llama(m.share(t)),
            Backbone::NeoX(m) => Backbone::NeoX(m.share(t)),
            Backbone::Gemma2(m) => Backbone::Gemma2(m.share(t)),
        }
    }
}
