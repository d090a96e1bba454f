//! Exact prices in US cents.

use serde::{Deserialize, Serialize};

/// A positive price in US cents, at most [`Money::MAX_CENTS`].
///
/// Integers keep arithmetic exact; the serialized form is the bare cent count,
/// and deserializing re-checks the bounds so stored data cannot smuggle in an
/// invalid price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

/// Why a price was rejected; the messages are the HTTP API's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// Zero, negative, or not a number at all.
    #[error("Price must be greater than 0")]
    NotPositive,
    /// Finer than a cent.
    #[error("Price must have at most 2 decimal places")]
    TooPrecise,
    /// Above [`Money::MAX_CENTS`].
    #[error("Price must not exceed 999999.99")]
    TooLarge,
}

impl Money {
    /// Stripe's maximum charge: 999,999.99 USD.
    pub const MAX_CENTS: i64 = 99_999_999;

    /// A price of `cents` cents.
    ///
    /// # Errors
    /// [`PriceError::NotPositive`] below one cent, [`PriceError::TooLarge`]
    /// above [`Money::MAX_CENTS`].
    pub fn from_cents(cents: i64) -> Result<Money, PriceError> {
        if cents <= 0 {
            Err(PriceError::NotPositive)
        } else if cents > Self::MAX_CENTS {
            Err(PriceError::TooLarge)
        } else {
            Ok(Money(cents))
        }
    }

    /// Parses decimal text such as `"10"`, `"10.50"`, `"0.1"` or `"1e2"`
    /// exactly, without going through floating point.
    ///
    /// Trailing zeros do not count as precision (`"10.500"` is fine,
    /// `"10.001"` is not). Anything that is not a plain decimal number
    /// (`""`, `"abc"`, `"NaN"`, `"inf"`, surrounding whitespace) is reported
    /// as [`PriceError::NotPositive`], like zero and negative amounts.
    ///
    /// # Errors
    /// [`PriceError::NotPositive`] for zero, negative or malformed text,
    /// [`PriceError::TooPrecise`] for fractions of a cent,
    /// [`PriceError::TooLarge`] above [`Money::MAX_CENTS`].
    pub fn parse_decimal(text: &str) -> Result<Money, PriceError> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let decimal = Decimal::parse(unsigned).ok_or(PriceError::NotPositive)?;
        if negative || decimal.digits.is_empty() {
            return Err(PriceError::NotPositive);
        }
        decimal.to_money()
    }

    /// The amount in cents.
    #[must_use]
    pub fn cents(self) -> i64 {
        self.0
    }

    /// The amount in dollars as a JSON number: an integer for whole dollars
    /// (`100`), otherwise a two-decimal number (`19.99`).
    #[must_use]
    pub fn to_json_number(self) -> serde_json::Number {
        if self.0 % 100 == 0 {
            return serde_json::Number::from(self.0 / 100);
        }
        // Cents stay below 2^53, so the division is the closest double to the
        // decimal and prints back as exactly two (or one) decimals.
        #[allow(clippy::cast_precision_loss)]
        let dollars = self.0 as f64 / 100.0;
        serde_json::Number::from_f64(dollars)
            .unwrap_or_else(|| serde_json::Number::from(self.0 / 100))
    }

    /// For cents validated when their event was recorded (replay must not
    /// fail), and the zero placeholder of an aggregate that does not exist.
    pub(crate) fn from_recorded_cents(cents: i64) -> Money {
        Money(cents)
    }
}

impl TryFrom<i64> for Money {
    type Error = PriceError;

    fn try_from(cents: i64) -> Result<Self, Self::Error> {
        Money::from_cents(cents)
    }
}

impl From<Money> for i64 {
    fn from(money: Money) -> i64 {
        money.0
    }
}

/// A non-negative decimal `digits × 10^exponent`, normalised so `digits`
/// has no leading or trailing zeros (empty means zero).
struct Decimal {
    digits: String,
    exponent: i64,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], parse_exponent(&text[at + 1..])?),
            None => (text, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part)
        {
            return None;
        }
        let frac_len = i64::try_from(frac_part.len()).unwrap_or(i64::MAX);
        let mut exponent = exponent.saturating_sub(frac_len);
        let joined = format!("{int_part}{frac_part}");
        let significant = joined.trim_start_matches('0');
        let digits = significant.trim_end_matches('0');
        let trailing = i64::try_from(significant.len() - digits.len()).unwrap_or(i64::MAX);
        exponent = exponent.saturating_add(trailing);
        Some(Decimal {
            digits: digits.to_owned(),
            exponent,
        })
    }

    fn to_money(&self) -> Result<Money, PriceError> {
        let cents_exponent = self.exponent.saturating_add(2);
        if cents_exponent < 0 {
            return Err(PriceError::TooPrecise);
        }
        let len = i64::try_from(self.digits.len()).unwrap_or(i64::MAX);
        // MAX_CENTS has 8 digits; checking the length first keeps the
        // arithmetic below from overflowing on inputs like "1e400".
        if len.saturating_add(cents_exponent) > 8 {
            return Err(PriceError::TooLarge);
        }
        let mut cents: i64 = self.digits.parse().map_err(|_| PriceError::NotPositive)?;
        for _ in 0..cents_exponent {
            cents *= 10;
        }
        Money::from_cents(cents)
    }
}

/// An exponent's digits with an optional sign, saturating far beyond any
/// exponent a valid price could have.
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0_i64, |acc, b| {
        acc.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests;
