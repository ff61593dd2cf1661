package ingest

// buffers is a free list of byte slices of one capacity. Unlike a
// sync.Pool it survives garbage collections: the large batch and
// compression buffers would otherwise be allocated again after every GC,
// and freeing them made the runtime return memory to the kernel (madvise)
// only to ask for it again.
type buffers struct {
	size int
	free chan []byte
}

func newBuffers(size, keep int) *buffers {
	return &buffers{size: size, free: make(chan []byte, keep)}
}

// get returns an empty slice with capacity of at least the list's size.
func (b *buffers) get() []byte {
	select {
	case buf := <-b.free:
		return buf[:0]
	default:
		return make([]byte, 0, b.size)
	}
}

// put gives a slice back; slices of another capacity are left to the GC.
func (b *buffers) put(buf []byte) {
	if cap(buf) < b.size {
		return
	}
	select {
	case b.free <- buf[:0]:
	default:
	}
}
