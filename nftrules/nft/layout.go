package nft

// Layout is what the generic layer must be told about the contents of our
// tables because the kernel does not record it. google/nftables v0.3.0
// cannot read nft's typeof user data and misreports the key type of
// verdict maps (#319), so a set read back is typed from the layout that
// made it; and only the layout knows which sets the packet path fills.
// nftrules implements it for nftproxy's tables.
type Layout interface {
	// Set returns an empty set of the given name and family, with the type
	// the layout gives it; false for a name the layout never makes (such a
	// set is read back typeless, so that Diff recreates the table).
	Set(f Family, name string) (*Set, bool)
	// PacketPathSet reports whether the packet path fills the named set
	// (update @set): its element changes are not foreign changes.
	PacketPathSet(name string) bool
}
