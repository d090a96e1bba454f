#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn parse_decimal_accepts_exact_prices() {
    let cases = [
        ("10", 1_000),
        ("10.5", 1_050),
        ("10.50", 1_050),
        ("10.500", 1_050),
        ("0.1", 10),
        ("0.01", 1),
        ("1e2", 10_000),
        ("1E2", 10_000),
        ("1e+2", 10_000),
        ("1234e-2", 1_234),
        ("0.5e1", 500),
        ("007.10", 710),
        (".5", 50),
        ("5.", 500),
        ("999999.99", 99_999_999),
        ("999999.990000", 99_999_999),
        ("19.99", 1_999),
    ];
    for (text, cents) in cases {
        assert_eq!(
            Money::parse_decimal(text).map(Money::cents),
            Ok(cents),
            "{text}"
        );
    }
}

#[test]
fn parse_decimal_rejects_invalid_prices() {
    use PriceError::{NotPositive, TooLarge, TooPrecise};
    let cases = [
        ("", NotPositive),
        ("abc", NotPositive),
        ("NaN", NotPositive),
        ("inf", NotPositive),
        ("Infinity", NotPositive),
        ("0", NotPositive),
        ("0.00", NotPositive),
        ("0e5", NotPositive),
        ("-1", NotPositive),
        ("-0", NotPositive),
        ("-0.001", NotPositive),
        ("--1", NotPositive),
        ("+1", NotPositive),
        (" 1", NotPositive),
        ("1 ", NotPositive),
        (".", NotPositive),
        ("1e", NotPositive),
        ("1e+", NotPositive),
        ("e2", NotPositive),
        ("1.2.3", NotPositive),
        ("0x10", NotPositive),
        ("1_000", NotPositive),
        ("0.001", TooPrecise),
        ("10.001", TooPrecise),
        ("1e-3", TooPrecise),
        ("1e-400", TooPrecise),
        ("1e-99999999999999999999999", TooPrecise),
        ("1000000", TooLarge),
        ("1000000.00", TooLarge),
        ("1e6", TooLarge),
        ("1e400", TooLarge),
        ("1e99999999999999999999999", TooLarge),
        ("99999999999999999999999999", TooLarge),
    ];
    for (text, error) in cases {
        assert_eq!(Money::parse_decimal(text), Err(error), "{text}");
    }
}

#[test]
fn from_cents_enforces_bounds() {
    assert_eq!(Money::from_cents(1).map(Money::cents), Ok(1));
    assert_eq!(
        Money::from_cents(Money::MAX_CENTS).map(Money::cents),
        Ok(99_999_999)
    );
    assert_eq!(Money::from_cents(0), Err(PriceError::NotPositive));
    assert_eq!(Money::from_cents(-5), Err(PriceError::NotPositive));
    assert_eq!(Money::from_cents(100_000_000), Err(PriceError::TooLarge));
}

#[test]
fn to_json_number_uses_integers_for_whole_dollars() {
    let json = |cents| {
        Money::from_cents(cents)
            .unwrap()
            .to_json_number()
            .to_string()
    };
    assert_eq!(json(10_000), "100");
    assert_eq!(json(100), "1");
    assert_eq!(json(1_999), "19.99");
    assert_eq!(json(1_050), "10.5");
    assert_eq!(json(1), "0.01");
    assert_eq!(json(99_999_999), "999999.99");
    assert!(Money::from_cents(100).unwrap().to_json_number().is_i64());
    assert!(Money::from_cents(1_999).unwrap().to_json_number().is_f64());
}

#[test]
fn serde_is_the_cent_count_and_revalidates() {
    let money = Money::from_cents(1_999).unwrap();
    assert_eq!(serde_json::to_string(&money).unwrap(), "1999");
    assert_eq!(serde_json::from_str::<Money>("1999").unwrap(), money);
    assert!(serde_json::from_str::<Money>("0").is_err());
    assert!(serde_json::from_str::<Money>("100000000").is_err());
}

#[test]
fn messages_match_the_api() {
    assert_eq!(
        PriceError::NotPositive.to_string(),
        "Price must be greater than 0"
    );
    assert_eq!(
        PriceError::TooPrecise.to_string(),
        "Price must have at most 2 decimal places"
    );
    assert_eq!(
        PriceError::TooLarge.to_string(),
        "Price must not exceed 999999.99"
    );
}
