package nft

// Internals for the tests of package nft_test, which build rulesets with
// nftrules (an import cycle for package nft's own tests).
var (
	QueueForTest  = queueForTest
	ElemListAttr  = elemListAttr
	EachElement   = eachElement
	ElementFromNL = elementFromNL
)

const NlaHeaderLen = nlaHeaderLen
