//! An HTML part's charset: decoding its bytes to text for the rewriter, and encoding the
//! rewritten text back into the same charset, with `encoding_rs` (the WHATWG Encoding
//! Standard, as browsers read mail's labels).
//!
//! Only ASCII-compatible charsets are rewritten: in them, the markup the rewriter changes
//! (`href="…"`, the pixel's `<img>`) is the same bytes as in ASCII, and the rest of the text
//! decodes and encodes back to itself. Others (ISO-2022-JP, UTF-16) are passed through, as
//! are bytes that are not valid in their own charset: rewriting those would change them.

use encoding_rs::Encoding;

use super::report::Untouched;

/// A part's charset, found by its label.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Charset {
    encoding: &'static Encoding,
}

impl Charset {
    /// The charset `label` names (`None`: no `charset` parameter, which for `text/*` means
    /// US-ASCII, RFC 2046; read, as browsers do, as windows-1252), if the rewriter can write
    /// it.
    pub(crate) fn for_label(label: Option<&str>) -> Result<Charset, Untouched> {
        let label = label.unwrap_or("us-ascii");
        let encoding = Encoding::for_label_no_replacement(label.trim().as_bytes())
            .ok_or_else(|| Untouched::UnknownCharset(label.to_owned()))?;
        if !encoding.is_ascii_compatible() {
            return Err(Untouched::NotAsciiCompatible(encoding.name().to_owned()));
        }
        Ok(Charset { encoding })
    }

    /// The text `bytes` hold, or why they cannot be rewritten.
    pub(crate) fn decode<'a>(
        &self,
        bytes: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, str>, Untouched> {
        self.encoding
            .decode_without_bom_handling_and_without_replacement(bytes)
            .ok_or_else(|| Untouched::InvalidInCharset(self.encoding.name().to_owned()))
    }

    /// `text` in this charset, or why it cannot be (a character the charset lacks).
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u8>, Untouched> {
        let (bytes, _, unmappable) = self.encoding.encode(text);
        if unmappable {
            return Err(Untouched::Unmappable(self.encoding.name().to_owned()));
        }
        Ok(bytes.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_compatible_charsets_are_written_and_others_are_not() {
        for label in [
            "utf-8",
            "GB2312",
            "gbk",
            "gb18030",
            "big5",
            "Shift_JIS",
            "iso-8859-1",
            "windows-1251",
        ] {
            assert!(Charset::for_label(Some(label)).is_ok(), "{label}");
        }
        assert!(Charset::for_label(None).is_ok());
        for label in ["iso-2022-jp", "utf-16", "utf-16le"] {
            assert!(
                matches!(
                    Charset::for_label(Some(label)),
                    Err(Untouched::NotAsciiCompatible(_))
                ),
                "{label}"
            );
        }
        assert!(matches!(
            Charset::for_label(Some("x-klingon")),
            Err(Untouched::UnknownCharset(_))
        ));
    }

    #[test]
    fn gbk_text_goes_there_and_back() {
        let gbk = Charset::for_label(Some("gbk")).unwrap();
        let (bytes, _, _) = encoding_rs::GBK.encode("<a href=\"https://例子.cn/\">点击这里</a>");
        let text = gbk.decode(&bytes).unwrap();
        assert!(text.contains("点击这里"));
        assert_eq!(gbk.encode(&text).unwrap(), bytes.into_owned());
        assert!(matches!(
            gbk.decode(b"\xff\xff"),
            Err(Untouched::InvalidInCharset(_))
        ));
    }
}
