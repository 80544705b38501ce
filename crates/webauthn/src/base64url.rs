//! base64url without padding, the encoding of every binary field in WebAuthn's JSON forms.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::WebauthnError;

/// Encodes without padding, as `toJSON()` does; decodes with or without it, so clients
/// built on other libraries are not refused over `=`.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(crate) fn encode(bytes: &[u8]) -> String {
    ENGINE.encode(bytes)
}

/// Decodes `text` if it can hold at most `bytes_max` bytes. The length of the text is
/// checked first, so an oversize field costs nothing to refuse.
pub(crate) fn decode_bounded(
    field: &'static str,
    text: &str,
    bytes_max: usize,
) -> Result<Vec<u8>, WebauthnError> {
    // Padded length, the longest text that encodes `bytes_max` bytes.
    let text_len_max = bytes_max.div_ceil(3) * 4;
    let too_large = WebauthnError::TooLarge {
        field,
        limit: bytes_max,
    };
    if text.len() > text_len_max {
        return Err(too_large);
    }
    let bytes = ENGINE
        .decode(text)
        .map_err(|_| WebauthnError::Malformed(field))?;
    if bytes.len() > bytes_max {
        return Err(too_large);
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_without_padding_and_accepts_padding() {
        let text = encode(&[0xfb, 0xff]);
        assert_eq!(text, "-_8");
        assert_eq!(decode_bounded("f", "-_8", 2).unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_bounded("f", "-_8=", 2).unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn refuses_standard_alphabet_and_oversize() {
        assert_eq!(
            decode_bounded("f", "+/8", 2),
            Err(WebauthnError::Malformed("f"))
        );
        assert_eq!(
            decode_bounded("f", &encode(&[0; 3]), 2),
            Err(WebauthnError::TooLarge {
                field: "f",
                limit: 2
            })
        );
        let long = "A".repeat(10_000);
        assert_eq!(
            decode_bounded("f", &long, 16),
            Err(WebauthnError::TooLarge {
                field: "f",
                limit: 16
            })
        );
    }
}
