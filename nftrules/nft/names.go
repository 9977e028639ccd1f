package nft

// TableName is the name of our table in both families. Nothing outside
// tables of this name is ever read, changed or deleted.
const TableName = "nftproxy"

// maxNameLen is the longest table, chain or set name the kernel accepts
// (NFT_NAME_MAXLEN, 256 with the terminating NUL).
const maxNameLen = 255

// IsName reports whether s can stand unquoted as a chain or set name in
// nft syntax: a letter, '_' or '.' followed by letters, digits and
// "/-_." (nft's scanner). Every name nftproxy makes is one. Names read
// back from the kernel are anyone's to choose; ParseRule and the nft
// rendering of a live ruleset accept no other, so that a name cannot carry
// nft syntax (a ';', a '}', a newline) into `nft -f`.
func IsName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '.':
		case i > 0 && (c >= '0' && c <= '9' || c == '/' || c == '-'):
		default:
			return false
		}
	}
	return true
}
