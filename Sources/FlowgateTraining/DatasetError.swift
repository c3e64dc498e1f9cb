/// Why a dataset file could not be read. Every error names the file and, where one is involved,
/// the key (`.npz` member / HDF5 dataset), so a message alone says where to look.
public struct DatasetError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable, Equatable {
        /// The file could not be opened or read.
        case io
        /// The extension is not `.npz`, `.npy`, `.hdf5` or `.h5`.
        case unsupportedFormat
        /// No ZIP end-of-central-directory record and no ZIP signature.
        case notAZip
        /// ZIP structures (central directory, local headers) run past the end of the file.
        case truncatedArchive
        /// A member's data (or a `.npy` payload) is shorter than its headers say.
        case memberTruncated
        /// A member's CRC-32 does not match its data.
        case crcMismatch
        /// A declared size or count is larger than the file can hold or otherwise absurd.
        case sizeOutOfRange
        /// ZIP feature we do not read (encryption, compression other than stored/deflate, multi-disk).
        case unsupportedArchiveFeature
        /// The `.npy` magic, version or header dictionary is not parseable.
        case badHeader
        case unsupportedDtype
        case fortranOrder
        case bigEndian
        /// Shape × item size ≠ data length, or arrays whose shapes disagree.
        case shapeMismatch
        case missingKey
        case duplicateKey
        /// NaN or ±inf in a numeric array.
        case nonFinite
        /// A flag array holds something other than 0/1, or both flags are set on one row.
        case invalidFlags
        /// The d4rl-pybullet one-row-shifted layout (see `OfflineDataset.load`).
        case shiftedLayout
        /// An error reported by libhdf5.
        case hdf5
    }

    public var kind: Kind
    public var file: String
    public var key: String?
    public var detail: String

    public init(_ kind: Kind, file: String, key: String? = nil, _ detail: String) {
        self.kind = kind
        self.file = file
        self.key = key
        self.detail = detail
    }

    public var description: String {
        if let key { return "\(file): key '\(key)': \(detail)" }
        return "\(file): \(detail)"
    }
}
