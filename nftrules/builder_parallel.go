package nftrules

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// Fragments are pure functions of the State and one service port; putting
// them into a Derivation is not (it owns the tables' maps). A cold Build
// makes thousands of them, so it makes them on the other cores while this
// goroutine places them, in the order a sequential Build would: the result
// is the same ruleset.
// Variables for the tests, which compare with the sequential Build.
var (
	// parallelMinPorts is the number of new service ports below which
	// fragments are made in line: a change's few ports gain nothing.
	parallelMinPorts = 1024
	// fragmentChunk service ports are made by one worker at a time.
	fragmentChunk = 128
)

// chunksAhead bounds how far the workers may run ahead of placing.
const chunksAhead = 16

// madePort is one service port's fragments, per family (familyIndex).
type madePort struct {
	owner string
	frs   [2]*fragment
}

// makePort makes a service port's fragments for the State's families.
func makePort(st *model.State, fams []nft.Family, sp *model.ServicePort) madePort {
	m := madePort{owner: ServiceChainName(sp.Name)} // and its service chain's name
	for _, f := range fams {
		m.frs[familyIndex(f)] = serviceFragment(st, sp, f, m.owner)
	}
	return m
}

// addAll adds service ports new to the Builder, as add does one by one.
func (b *Builder) addAll(d *nft.Derivation, st *model.State, added []*model.ServicePort) {
	fams := FamiliesOf(st)
	workers := min(runtime.GOMAXPROCS(0)-1, 4)
	if workers < 1 || len(added) < parallelMinPorts {
		for _, sp := range added {
			b.place(d, fams, sp, makePort(st, fams, sp))
		}
		return
	}
	chunks := (len(added) + fragmentChunk - 1) / fragmentChunk
	ready := make([]chan []madePort, chunks)
	for i := range ready {
		ready[i] = make(chan []madePort, 1)
	}
	tokens := make(chan struct{}, chunksAhead) // a chunk made but not placed
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				tokens <- struct{}{}
				i := int(next.Add(1)) - 1
				if i >= chunks {
					<-tokens
					return
				}
				ports := added[i*fragmentChunk : min((i+1)*fragmentChunk, len(added))]
				made := make([]madePort, len(ports))
				for j, sp := range ports {
					made[j] = makePort(st, fams, sp)
				}
				ready[i] <- made
			}
		}()
	}
	for i := range chunks {
		made := <-ready[i]
		for j, sp := range added[i*fragmentChunk : min((i+1)*fragmentChunk, len(added))] {
			b.place(d, fams, sp, made[j])
		}
		<-tokens
	}
	wg.Wait()
}
