import DistillData
import Foundation

/// CSV files: the RFC 4180 parser, then schema inference and encoding as a classification
/// dataset (last column as label) and as a regression dataset (first column as target).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSV(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard let table = try? CSVTable.parse(Data(bytes: bytes, count: count), name: "fuzz.csv") else { return 0 }
    if let schema = try? table.inferSchema(labelColumn: table.header.last) {
        _ = try? table.dataset(schema: schema)
        _ = try? table.dataset(schema: schema, ignoreUnknownCategories: true)
    }
    _ = try? table.dataset(labelColumn: nil)
    if let first = table.header.first { _ = try? table.regression(targetColumn: first) }
    return 0
}
