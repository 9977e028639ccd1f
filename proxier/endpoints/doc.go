// Package endpoints holds Kubernetes' rules for which endpoints of a
// Service may receive traffic, in one backend-neutral place, as upstream
// keeps them in pkg/proxy (topology.go's CategorizeEndpoints and the
// endpoints change tracker's local-ready count):
//
//   - usable: ready endpoints; when a set has none, the serving and
//     terminating ones (graceful termination); never the others;
//   - cluster-wide traffic follows the EndpointSlice topology hints when
//     they are usable for this node (Cluster);
//   - Local traffic policies use the usable endpoints on this node, the
//     fallback decided within the local set (Local);
//   - health check node ports count ready local endpoints (LocalReady).
//
// The nftables builder, the health check server, the metrics and the
// conntrack cleanup all ask this package; none has its own definition.
// Every function works on the endpoints it is given: callers that program
// one IP family at a time pass that family's endpoints, so each choice is
// made per family as upstream's per-family proxiers make it.
package endpoints
