import DistillData
import DistillTestSupport
import Foundation
import Testing

@Suite struct CSVTests {
    @Test func oneHotFeaturesAndStringLabels() throws {
        let dir = try TemporaryDirectory()
        let url = try dir.write("pets.csv", text: """
            age,color,"weight, kg",species
            3,red,"4.5",cat
            5, blue ,12,dog\r
            "1",red,3.25,cat

            7,"green, dark",30,dog
            """)
        let data = try CSVTable.read(url, labelColumn: "species")
        #expect(data.featureNames == ["age", "color=blue", "color=green, dark", "color=red", "weight, kg"])
        #expect(data.features.shape == [4, 5])
        #expect(data.features.scalars == [3, 0, 0, 1, 4.5,
                                          5, 1, 0, 0, 12,
                                          1, 0, 0, 1, 3.25,
                                          7, 0, 1, 0, 30])
        #expect(data.classNames == ["cat", "dog"])
        #expect(data.numClasses == 2)
        #expect(data.labels == [0, 1, 0, 1])
    }

    @Test func quotesNewlinesAndLineNumbers() throws {
        let table = try CSVTable.parse(Data("""
            \u{FEFF}name,note
            a,"said ""hi"", then left"
            b,"two
            lines"
            c,plain
            """.utf8), name: "q.csv")
        #expect(table.header == ["name", "note"])
        #expect(table.rows[0] == ["a", "said \"hi\", then left"])
        #expect(table.rows[1] == ["b", "two\nlines"])
        #expect(table.lineNumbers == [2, 3, 5])
    }

    @Test func integerLabelsAndUnlabelled() throws {
        let dir = try TemporaryDirectory()
        let url = try dir.write("n.csv", text: "x,y,label\n1,2,0\n3,4,3\n5,6,1\n")
        let data = try CSVTable.read(url, labelColumn: "label")
        #expect(data.labels == [0, 3, 1])
        #expect(data.numClasses == 4)
        #expect(data.featureNames == ["x", "y"])
        let unlabelled = try CSVTable.read(url, labelColumn: nil)
        #expect(unlabelled.labels.isEmpty)
        #expect(unlabelled.features.shape == [3, 3])
        // A numeric column can be forced to one-hot.
        let forced = try CSVTable.read(url, labelColumn: "label", categoricalColumns: ["x"])
        #expect(forced.featureNames == ["x=1", "x=3", "x=5", "y"])
    }

    @Test func regressionTargets() throws {
        let dir = try TemporaryDirectory()
        let url = try dir.write("r.csv", text: "size,kind,price\n1.5,a,10.25\n2,b,-3\n")
        let data = try CSVTable.readRegression(url, targetColumn: "price")
        #expect(data.targets.scalars == [10.25, -3])
        #expect(data.featureNames == ["size", "kind=a", "kind=b"])
        #expect(data.features.scalars == [1.5, 1, 0, 2, 0, 1])
        expectDataError("r.csv", "line 2, column 3 ('price')") {
            _ = try CSVTable.read(url, labelColumn: "price")  // 10.25 is no class index
        }
        expectDataError("CSVTable.readRegression") { _ = try CSVTable.read(url, labelColumn: "price") }
    }

    @Test func testFileUsesTheTrainingSchema() throws {
        let dir = try TemporaryDirectory()
        let trainURL = try dir.write("train.csv", text: "x,color,y\n1,red,cat\n2,blue,dog\n3,green,bird\n")
        // Columns reordered; only some categories and classes occur.
        let testURL = try dir.write("test.csv", text: "color,y,x\ngreen,dog,5\ngreen,bird,6\n")
        let table = try CSVTable.load(trainURL)
        let schema = try table.inferSchema(labelColumn: "y")
        #expect(schema.featureNames == ["x", "color=blue", "color=green", "color=red"])
        #expect(schema.label == .namedClasses(column: "y", classNames: ["bird", "cat", "dog"]))
        let train = try table.dataset(schema: schema)
        let test = try CSVTable.read(testURL, schema: schema)
        #expect(train.labels == [1, 2, 0])
        #expect(test.labels == [2, 0])
        #expect(test.featureNames == train.featureNames)
        #expect(test.features.scalars == [5, 0, 1, 0, 6, 0, 1, 0])
        // Inferring from the test file alone would have given other indices: the reason for schemas.
        #expect(try CSVTable.read(testURL, labelColumn: "y").labels == [1, 0])

        let unseen = try dir.write("unseen.csv", text: "x,color,y\n1,purple,cat\n")
        expectDataError("unseen.csv", "line 2, column 2 ('color')", "unknown category 'purple'", "known: blue, green, red") {
            _ = try CSVTable.read(unseen, schema: schema)
        }
        #expect(try CSVTable.read(unseen, schema: schema, ignoreUnknownCategories: true).features.scalars == [1, 0, 0, 0])
        let newClass = try dir.write("newclass.csv", text: "x,color,y\n1,red,fish\n")
        expectDataError("newclass.csv", "unknown class 'fish'") { _ = try CSVTable.read(newClass, schema: schema) }
        let lacking = try dir.write("lacking.csv", text: "x,y\n1,cat\n")
        expectDataError("lacking.csv", "no column named 'color'") { _ = try CSVTable.read(lacking, schema: schema) }

        // Integer classes: a test label beyond the training classes is refused.
        let intSchema = try CSVTable.parse(Data("a,label\n1,0\n2,2\n".utf8), name: "t").inferSchema(labelColumn: "label")
        #expect(intSchema.label == .integerClasses(column: "label", numClasses: 3))
        expectDataError("u", "label '3' is not a class index (an integer in 0..<3)") {
            _ = try CSVTable.parse(Data("a,label\n1,3\n".utf8), name: "u").dataset(schema: intSchema)
        }
        // Schemas are Codable, to be stored with a model.
        let json = try JSONEncoder().encode(schema)
        #expect(try JSONDecoder().decode(CSVSchema.self, from: json) == schema)
    }

    @Test func badFiles() throws {
        let dir = try TemporaryDirectory()
        let ragged = try dir.write("ragged.csv", text: "a,b,c\n1,2,3\n4,5\n")
        expectDataError("ragged.csv", "line 3", "2 fields, the header has 3") { _ = try CSVTable.read(ragged, labelColumn: nil) }

        let text = try dir.write("text.csv", text: "a,b\n1,2\n3,x\n5,6\n")
        expectDataError("text.csv", "line 3, column 2 ('b')", "'x' is not a finite number") {
            _ = try CSVTable.read(text, labelColumn: nil)
        }

        let nan = try dir.write("nan.csv", text: "a,b\n1,2\n3,nan\n5,6\n")
        expectDataError("nan.csv", "line 3, column 2 ('b')", "not a finite number") { _ = try CSVTable.read(nan, labelColumn: nil) }

        let missing = try dir.write("missing.csv", text: "a,b,label\n1,2,x\n3,,y\n5,6,x\n")
        expectDataError("missing.csv", "line 3, column 2 ('b')", "missing value") { _ = try CSVTable.read(missing, labelColumn: "label") }

        let missingLabel = try dir.write("nolabel.csv", text: "a,label\n1,x\n3,\n")
        expectDataError("nolabel.csv", "line 3, column 2 ('label')", "missing label") { _ = try CSVTable.read(missingLabel, labelColumn: "label") }

        let good = try dir.write("good.csv", text: "a,b\n1,2\n")
        expectDataError("good.csv", "no column named 'target'", "the columns are: a, b") {
            _ = try CSVTable.read(good, labelColumn: "target")
        }
        expectDataError("good.csv", "limit") { _ = try CSVTable.read(good, labelColumn: nil, maxBytes: 4) }

        let empty = try dir.write("empty.csv", text: "")
        expectDataError("empty.csv", "empty file") { _ = try CSVTable.read(empty, labelColumn: nil) }

        let headerOnly = try dir.write("header.csv", text: "a,b\n\n")
        expectDataError("header.csv", "no data rows") { _ = try CSVTable.read(headerOnly, labelColumn: nil) }

        let open = try dir.write("open.csv", text: "a,b\n1,\"2\n3,4\n")
        expectDataError("open.csv", "line 2", "never closed") { _ = try CSVTable.read(open, labelColumn: nil) }

        let stray = try dir.write("stray.csv", text: "a,b\n1,2\"x\n")
        expectDataError("stray.csv", "line 2", "quote inside unquoted field 2") { _ = try CSVTable.read(stray, labelColumn: nil) }

        let dup = try dir.write("dup.csv", text: "a,b,a\n1,2,3\n")
        expectDataError("dup.csv", "columns 1 and 3 are both named 'a'") { _ = try CSVTable.read(dup, labelColumn: nil) }

        let ids = try dir.write("ids.csv", text: "id,v\n" + (0..<20).map { "k\($0),\($0)" }.joined(separator: "\n"))
        expectDataError("ids.csv", "column 'id' has more than 5 distinct values") {
            _ = try CSVTable.load(ids).dataset(labelColumn: nil, maxCategories: 5)
        }
    }
}
