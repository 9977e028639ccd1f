package nft

import "net/netip"

// dispatchKey is the key of a service-ips element (as nftrules makes it).
func dispatchKey(ip netip.Addr, p Protocol, port uint16) []Value {
	return []Value{AddrValue(ip), NumValue(uint32(p)), NumValue(uint32(port))}
}
