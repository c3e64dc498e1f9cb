/// Parsing and validating the JSON header of a safetensors file.
extension Safetensors {
    /// One tensor entry of a header, with its offsets checked for sign and size consistency.
    struct HeaderEntry {
        var name: String
        var dtype: SafetensorsDType
        var shape: [Int]
        var begin: Int
        var end: Int
    }

    /// A parsed header: tensor entries (in file order) and the metadata map.
    struct Header {
        var entries: [HeaderEntry]
        var metadata: [String: String]
    }

    /// Parses the header bytes and validates each entry on its own (dtype, shape, offsets, size).
    /// Checks that need the buffer size (bounds, overlap, coverage) are done by the caller.
    static func parseHeader(
        _ bytes: UnsafeRawBufferPointer, fail: (ModelFileError.Problem) -> ModelFileError
    ) throws -> Header {
        let json: HeaderJSON
        do {
            json = try HeaderJSON.parse(bytes)
        } catch {
            throw fail(.invalidHeader("not valid JSON: \(error)"))
        }
        guard case .object(let members) = json else {
            throw fail(.invalidHeader("not a JSON object"))
        }
        var seen = Set<String>()
        var entries: [HeaderEntry] = []
        var metadata: [String: String] = [:]
        for (name, value) in members {
            guard seen.insert(name).inserted else { throw fail(.duplicateTensor(name)) }
            if name == metadataKey {
                guard case .object(let pairs) = value else {
                    throw fail(.invalidHeader("__metadata__ is not an object"))
                }
                for (key, item) in pairs {
                    guard let string = item.stringValue else {
                        throw fail(.invalidHeader("__metadata__ value for '\(key)' is not a string"))
                    }
                    guard metadata.updateValue(string, forKey: key) == nil else {
                        throw fail(.invalidHeader("__metadata__ key '\(key)' appears more than once"))
                    }
                }
                continue
            }
            entries.append(try parseEntry(name: name, value, fail: fail))
        }
        return Header(entries: entries, metadata: metadata)
    }

    private static func parseEntry(
        name: String, _ value: HeaderJSON, fail: (ModelFileError.Problem) -> ModelFileError
    ) throws -> HeaderEntry {
        guard case .object(let fields) = value else {
            throw fail(.invalidHeader("entry for tensor '\(name)' is not an object"))
        }
        func field(_ key: String) throws -> HeaderJSON {
            guard let found = fields.first(where: { $0.key == key }) else {
                throw fail(.invalidHeader("tensor '\(name)' has no '\(key)'"))
            }
            return found.value
        }
        guard let dtypeName = try field("dtype").stringValue else {
            throw fail(.invalidHeader("tensor '\(name)': dtype is not a string"))
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw fail(.unsupportedDType(tensor: name, dtype: dtypeName))
        }
        guard case .array(let shapeItems) = try field("shape"),
            let shape = Optional(shapeItems.compactMap { $0.intValue }), shape.count == shapeItems.count,
            shape.allSatisfy({ $0 >= 0 })
        else {
            throw fail(.invalidHeader("tensor '\(name)': shape is not an array of non-negative integers"))
        }
        guard case .array(let offsetItems) = try field("data_offsets"), offsetItems.count == 2,
            let begin = offsetItems[0].intValue, let end = offsetItems[1].intValue, begin >= 0, end >= 0
        else {
            throw fail(.invalidHeader("tensor '\(name)': data_offsets is not two non-negative integers"))
        }
        guard begin <= end else {
            throw fail(.invalidHeader("tensor '\(name)': data_offsets [\(begin), \(end)] are reversed"))
        }
        var byteCount = dtype.byteSize
        for dimension in shape {
            let (product, overflow) = byteCount.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw fail(.invalidHeader("tensor '\(name)': shape \(shape) is too large")) }
            byteCount = product
        }
        guard byteCount == end - begin else {
            throw fail(.sizeMismatch(tensor: name, expectedBytes: byteCount, actualBytes: end - begin))
        }
        return HeaderEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }
}
