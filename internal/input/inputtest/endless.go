package inputtest

// Endless is an endless stream of one byte, for input over the size limit.
type Endless byte

func (e Endless) Read(p []byte) (int, error) {
	if len(p) > 0 {
		p[0] = byte(e)
		for n := 1; n < len(p); n *= 2 {
			copy(p[n:], p[:n])
		}
	}
	return len(p), nil
}
