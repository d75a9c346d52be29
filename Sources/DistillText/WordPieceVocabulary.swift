/// The WordPiece vocabulary as an open-addressing hash table over UTF-8 bytes, so that looking
/// up a candidate piece (a byte range of the current word) costs one hash and usually one
/// comparison, with no `String` built per candidate.
///
/// Every token is stored as a word-initial entry (its whole text); a token that starts with the
/// continuation prefix (`##`) is stored a second time as a continuation entry holding the text
/// after the prefix, so that looking up continuation `s` finds exactly the token `##s`.
struct WordPieceVocabulary: Sendable {
    private var bytes: [UInt8] = []
    private var entryStart: [Int32] = []
    private var entryLength: [Int32] = []
    private var entryID: [Int32] = []
    private var entryIsContinuation: [Bool] = []
    /// Entry index + 1 in each slot, 0 for an empty slot; the count is a power of two.
    private var slots: [Int32] = []
    private var slotMask = 0
    /// The longest word-initial and continuation entries, in bytes: no longer piece can match.
    private(set) var longestInitial = 0
    private(set) var longestContinuation = 0

    /// A table of `tokens` (token text, id), continuation entries made with `continuationPrefix`.
    init(tokens: [(text: String, id: Int)], continuationPrefix: String) {
        let prefix = Array(continuationPrefix.utf8)
        var capacity = 16
        while capacity < tokens.count * 4 { capacity <<= 1 }
        slots = Array(repeating: 0, count: capacity)
        slotMask = capacity - 1
        for (text, id) in tokens {
            let utf8 = Array(text.utf8)
            insert(utf8[...], id: id, continuation: false)
            if !prefix.isEmpty && utf8.count >= prefix.count && utf8.starts(with: prefix) {
                insert(utf8[prefix.count...], id: id, continuation: true)
            }
        }
    }

    private mutating func insert(_ key: ArraySlice<UInt8>, id: Int, continuation: Bool) {
        let hash = key.withUnsafeBufferPointer { Self.hash($0.baseAddress, $0.count, continuation: continuation) }
        var slot = hash & slotMask
        while slots[slot] != 0 {
            let e = Int(slots[slot] - 1)
            if entryIsContinuation[e] == continuation && entryLength[e] == key.count
                && bytes[Int(entryStart[e])..<Int(entryStart[e]) + key.count].elementsEqual(key) {
                return  // the same key twice: the first id stays (a vocabulary maps each text once)
            }
            slot = (slot + 1) & slotMask
        }
        slots[slot] = Int32(entryID.count + 1)
        entryStart.append(Int32(bytes.count))
        entryLength.append(Int32(key.count))
        entryID.append(Int32(id))
        entryIsContinuation.append(continuation)
        bytes.append(contentsOf: key)
        if continuation { longestContinuation = max(longestContinuation, key.count) } else { longestInitial = max(longestInitial, key.count) }
    }

    /// FNV-1a over the bytes, with a different seed for continuation keys.
    @inline(__always)
    private static func hash(_ p: UnsafePointer<UInt8>?, _ count: Int, continuation: Bool) -> Int {
        var h: UInt64 = continuation ? 0x84222325_cbf29ce4 : 0xcbf29ce4_84222325
        if let p {
            for i in 0..<count {
                h ^= UInt64(p[i])
                h = h &* 0x100_0000_01b3
            }
        }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The id of the piece `p[0..<count]` (a continuation piece when `continuation`), or nil.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>, _ count: Int, continuation: Bool) -> Int? {
        var slot = Self.hash(p, count, continuation: continuation) & slotMask
        return slots.withUnsafeBufferPointer { slots in
            bytes.withUnsafeBufferPointer { stored in
                while true {
                    let s = slots[slot]
                    if s == 0 { return nil }
                    let e = Int(s - 1)
                    if entryLength[e] == count && entryIsContinuation[e] == continuation
                        && (count == 0 || memcmp(stored.baseAddress! + Int(entryStart[e]), p, count) == 0) {
                        return Int(entryID[e])
                    }
                    slot = (slot + 1) & slotMask
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
