//! The cost estimate of a run's usage: a table of list prices of current Claude models, in USD
//! per million tokens, for input, output, cache writes (5-minute) and cache reads, after the
//! operator's own `[[price]]` entries (a negotiated rate, a model newer than this table). These
//! are estimates from Anthropic's published prices, not a bill: a model neither names gets no
//! `cost_usd`. Pure.
//!
//! See: <https://docs.anthropic.com/en/docs/about-claude/pricing>

use crate::api::anthropic::ModelUsage;
use crate::config::ModelPrice;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Tokens written to the prompt cache.
    pub cache_write: f64,
    /// Tokens read from the prompt cache.
    pub cache_read: f64,
}

impl Price {
    /// The estimated cost of `usage`, in USD.
    pub fn cost(&self, usage: &ModelUsage) -> f64 {
        #[allow(clippy::cast_precision_loss)] // Token counts stay far below 2^52.
        let dollars = |tokens: u64, per_million: f64| tokens as f64 * per_million / 1_000_000.0;
        dollars(usage.input_tokens, self.input)
            + dollars(usage.output_tokens, self.output)
            + dollars(usage.cache_creation_input_tokens, self.cache_write)
            + dollars(usage.cache_read_input_tokens, self.cache_read)
    }
}

/// Model id prefixes and their prices, most specific first.
const PRICES: [(&str, Price); 7] = [
    ("claude-opus-4-5", price(5.0, 25.0)),
    ("claude-opus-4", price(15.0, 75.0)),
    ("claude-sonnet-4", price(3.0, 15.0)),
    ("claude-haiku-4", price(1.0, 5.0)),
    ("claude-3-7-sonnet", price(3.0, 15.0)),
    ("claude-3-5-haiku", price(0.8, 4.0)),
    ("claude-3-haiku", price(0.25, 1.25)),
];

/// Cache writes cost 1.25 times input, cache reads a tenth of it.
const fn price(input: f64, output: f64) -> Price {
    Price { input, output, cache_write: input * 1.25, cache_read: input / 10.0 }
}

/// The price of `model` (an id such as `claude-haiku-4-5-20251001`): the configured entry with
/// the longest prefix of it, else the table's, else none.
pub fn price_of(configured: &[ModelPrice], model: &str) -> Option<Price> {
    let own = configured
        .iter()
        .filter(|entry| model.starts_with(entry.model.as_str()))
        .max_by_key(|entry| entry.model.len())
        .map(|entry| Price {
            input: entry.input,
            output: entry.output,
            cache_write: entry.cache_write,
            cache_read: entry.cache_read,
        });
    own.or_else(|| {
        PRICES.iter().find(|(prefix, _)| model.starts_with(prefix)).map(|(_, price)| *price)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_follows_the_table() {
        let usage = ModelUsage {
            input_tokens: 1_000_000,
            output_tokens: 2_000_000,
            cache_creation_input_tokens: 1_000_000,
            cache_read_input_tokens: 10_000_000,
        };
        let cost = |model| price_of(&[], model).map(|price| price.cost(&usage));
        // 1 + 2 × 5 + 1.25 + 10 × 0.1.
        assert!((cost("claude-haiku-4-5-20251001").unwrap() - 13.25).abs() < 1e-9);
        // 15 + 2 × 75 + 18.75 + 10 × 1.5.
        assert!((cost("claude-opus-4-1").unwrap() - 198.75).abs() < 1e-9);
        assert!((cost("claude-opus-4-5").unwrap() - 66.25).abs() < 1e-9);
        assert_eq!(cost("gpt-4"), None);
    }

    #[test]
    fn a_configured_price_comes_before_the_table_and_the_longest_prefix_wins() {
        let entry = |model: &str, input: f64| ModelPrice {
            model: model.to_owned(),
            input,
            output: 2.0 * input,
            cache_write: 0.0,
            cache_read: 0.0,
        };
        let own = [entry("claude", 1.0), entry("claude-haiku-4-5", 2.0), entry("gpt-4", 3.0)];
        let usage = ModelUsage { input_tokens: 1_000_000, ..ModelUsage::default() };
        let cost = |model| price_of(&own, model).map(|price| price.cost(&usage));
        assert_eq!(cost("claude-haiku-4-5-20251001"), Some(2.0));
        assert_eq!(cost("claude-opus-4-1"), Some(1.0));
        assert_eq!(cost("gpt-4o"), Some(3.0));
        assert_eq!(cost("mistral"), None);
    }
}
