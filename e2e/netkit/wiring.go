package netkit

import (
	"fmt"
	"net/netip"
)

// Link joins a and b with a veth pair and gives each end its addresses
// (prefixes of a shared subnet per family).
func Link(a *NS, aIf string, aAddrs []netip.Prefix, b *NS, bIf string, bAddrs []netip.Prefix) error {
	if err := Veth(a, aIf, b, bIf); err != nil {
		return err
	}
	for _, p := range aAddrs {
		if err := a.AddAddr(aIf, p); err != nil {
			return err
		}
	}
	for _, p := range bAddrs {
		if err := b.AddAddr(bIf, p); err != nil {
			return err
		}
	}
	return nil
}

// ConnectRoutedPod wires pod behind node the way a routed CNI does: a veth
// whose node end carries the pod gateway addresses, a /32 (/128) host route
// on the node for each pod address, and in the pod its addresses, an
// on-link route to each gateway and default routes through them. It does
// not need a bridge, and a pod reaching itself through a Service leaves and
// re-enters through its own veth (hairpin).
func ConnectRoutedPod(node *NS, hostIf string, pod *NS, podAddrs, gateways []netip.Addr) error {
	if err := Veth(node, hostIf, pod, "eth0"); err != nil {
		return err
	}
	if err := routedPod(node, hostIf, pod, podAddrs, gateways); err != nil {
		return fmt.Errorf("netkit: routed pod %s behind %s: %w", pod.Name, node.Name, err)
	}
	return nil
}

func routedPod(node *NS, hostIf string, pod *NS, podAddrs, gateways []netip.Addr) error {
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	for _, gw := range gateways {
		if err := node.AddAddr(hostIf, host(gw)); err != nil {
			return err
		}
	}
	for _, a := range podAddrs {
		if err := node.AddDeviceRoute(host(a), hostIf); err != nil {
			return err
		}
		if err := pod.AddAddr("eth0", host(a)); err != nil {
			return err
		}
	}
	for _, gw := range gateways {
		if err := pod.AddDeviceRoute(host(gw), "eth0"); err != nil {
			return err
		}
		if err := pod.AddDefaultRoute(gw); err != nil {
			return err
		}
	}
	return nil
}
