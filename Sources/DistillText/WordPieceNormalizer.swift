import Foundation

/// What BERT's pre-tokenizer does with a (normalized) scalar: part of a word, a separator that
/// disappears (whitespace), or punctuation, which becomes a word of its own.
enum ScalarKind: UInt8, Sendable {
    case word, whitespace, punctuation
}

/// One scalar of normalized text with its pre-tokenizer kind.
struct NormalizedScalar: Sendable, Equatable {
    var value: Unicode.Scalar
    var kind: ScalarKind
}

/// BERT's normalizer and pre-tokenizer, scalar by scalar, as Hugging Face `tokenizers` defines
/// them (`BertNormalizer`, `BertPreTokenizer`):
///
/// 1. clean text: NUL, U+FFFD and "other" characters (general categories Cc, Cf, Co; tab, line
///    feed and carriage return excepted) are removed, whitespace (the Unicode White_Space
///    property) becomes a space. Unassigned code points (Cn) stay, as they do in `tokenizers`.
///    Categories are Unicode 8.0's, as in `tokenizers` (`category(_:)`).
/// 2. Chinese characters (the CJK Unified Ideograph blocks BERT lists) get a space on each side.
/// 3. strip accents: canonical decomposition (NFD), then nonspacing marks (Mn) are removed.
/// 4. lowercase: each scalar's full lowercase mapping (`İ` → `i̇`, context-free).
/// 5. pre-tokenize: whitespace separates words; punctuation (ASCII punctuation, which includes
///    `$+<=>^`|~`, or a Unicode P* category) is a word by itself.
///
/// Each step maps one scalar to zero or more scalars independently of its neighbours, so the
/// whole pipeline is a per-scalar function; the one exception is NFD's canonical reordering of
/// adjacent combining marks from different source scalars, which only matters for marks that
/// survive stripping (spacing marks with a combining class), and is not done here.
struct BertTextRules: Sendable, Equatable {
    var cleanText = true
    var handleChineseCharacters = true
    var stripAccents = true
    var lowercase = true

    /// The CJK ideograph ranges of BERT's `_is_chinese_char` as `tokenizers` implements them.
    static func isChinese(_ v: UInt32) -> Bool {
        switch v {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }

    /// The general category as `tokenizers` sees it: its category tables are Unicode 8.0's, so a
    /// scalar assigned later (an Arabic mark of Unicode 14, a Unicode 9 format character) is
    /// unassigned there, neither removed, stripped nor punctuation. Measured on every code point
    /// up to U+3FFFF (tests/interop/test_text_tokenizer.py).
    static func category(_ s: Unicode.Scalar) -> Unicode.GeneralCategory {
        if let old = unicode8Changes[s.value] { return old }
        guard let age = s.properties.age, age.major < 8 || (age.major == 8 && age.minor == 0) else { return .unassigned }
        return s.properties.generalCategory
    }

    /// Scalars of Unicode 8.0 whose general category has changed since, with their 8.0 category
    /// (from the Unicode Character Database's history; the seven differences the every-code-point
    /// check found).
    static let unicode8Changes: [UInt32: Unicode.GeneralCategory] = [
        0x166D: .otherPunctuation, 0x1734: .nonspacingMark, 0x1885: .otherLetter, 0x1886: .otherLetter,
        0xA9BD: .spacingMark, 0x111C9: .otherPunctuation, 0x1171E: .nonspacingMark,
    ]

    /// Removed by "clean text": NUL, U+FFFD and Cc/Cf/Co characters other than tab, LF and CR.
    static func isRemovedControl(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0, 0xFFFD: return true
        case 0x09, 0x0A, 0x0D: return false
        default:
            switch category(s) {
            case .control, .format, .privateUse, .surrogate: return true
            default: return false
            }
        }
    }

    /// The pre-tokenizer's kind of a normalized scalar.
    static func kind(of s: Unicode.Scalar) -> ScalarKind {
        if s.properties.isWhitespace { return .whitespace }
        if s.isASCII {
            let v = s.value
            if (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v) || (0x7B...0x7E).contains(v) {
                return .punctuation
            }
            return .word
        }
        switch category(s) {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return .punctuation
        default:
            return .word
        }
    }

    /// What one input scalar becomes: nothing (removed), or scalars with their kinds. A Chinese
    /// character comes back between two spaces.
    func normalize(_ s: Unicode.Scalar) -> [NormalizedScalar] {
        if cleanText {
            if Self.isRemovedControl(s) { return [] }
            if s.value == 0x09 || s.value == 0x0A || s.value == 0x0D || s.properties.isWhitespace {
                return [NormalizedScalar(value: " ", kind: .whitespace)]
            }
        }
        let chinese = handleChineseCharacters && Self.isChinese(s.value)
        var scalars: [Unicode.Scalar] = [s]
        if stripAccents && !s.isASCII {
            scalars = Array(String(Character(s)).decomposedStringWithCanonicalMapping.unicodeScalars)
                .filter { Self.category($0) != .nonspacingMark }
        }
        if lowercase {
            scalars = scalars.flatMap { Array($0.properties.lowercaseMapping.unicodeScalars) }
        }
        var out = scalars.map { NormalizedScalar(value: $0, kind: Self.kind(of: $0)) }
        if chinese {
            let space = NormalizedScalar(value: " ", kind: .whitespace)
            out = [space] + out + [space]
        }
        return out
    }
}
