package storage

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id cost parameters. They are encoded in every
// hash (PHC string form), so they can be raised later without breaking
// existing hashes.
type Argon2Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
	KeyLen    uint32
	SaltLen   int
}

// DefaultArgon2 follows OWASP's password storage guidance for argon2id:
// 19 MiB of memory, 2 iterations, 1 degree of parallelism.
var DefaultArgon2 = Argon2Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1, KeyLen: 32, SaltLen: 16}

// Validate rejects parameters that are unsafe or unusable.
func (p Argon2Params) Validate() error {
	switch {
	// The upper bounds keep an imported hash from making each login
	// attempt arbitrarily expensive.
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > 256*1024:
		return fmt.Errorf("argon2 memory %d KiB out of range (at most 256 MiB)", p.MemoryKiB)
	case p.Time < 1 || p.Time > 10:
		return fmt.Errorf("argon2 time %d out of range 1..10", p.Time)
	case p.Threads > 16:
		return fmt.Errorf("argon2 parallelism %d out of range 1..16", p.Threads)
	case p.Threads < 1:
		return errors.New("argon2 threads must be at least 1")
	case p.KeyLen < 16 || p.KeyLen > 128:
		return fmt.Errorf("argon2 key length %d out of range 16..128", p.KeyLen)
	case p.SaltLen < 8 || p.SaltLen > 64:
		return fmt.Errorf("argon2 salt length %d out of range 8..64", p.SaltLen)
	}
	return nil
}

var b64 = base64.RawStdEncoding

// HashPassword derives an argon2id hash of password with the given salt
// and returns it in PHC string form:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>. It is pure: the caller
// supplies the random salt.
func HashPassword(password string, salt []byte, p Argon2Params) string {
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// PHC is a parsed argon2id hash.
type PHC struct {
	Params Argon2Params
	Salt   []byte
	Key    []byte
}

// ParsePHC parses and bounds-checks an argon2id PHC string, so that a
// hash imported through a batch can neither be malformed nor demand
// unbounded work at login.
func ParsePHC(s string) (*PHC, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return nil, errors.New("not a PHC string ($argon2id$v=19$m=..,t=..,p=..$salt$hash)")
	}
	if parts[1] != "argon2id" {
		return nil, errors.New("only argon2id hashes are accepted")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, errors.New("unsupported argon2 version")
	}
	var p Argon2Params
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, errors.New("bad argon2 parameters")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad argon2 parameter %q", k)
		}
		switch k {
		case "m":
			p.MemoryKiB = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return nil, errors.New("argon2 parallelism out of range")
			}
			p.Threads = uint8(n)
		default:
			return nil, fmt.Errorf("unknown argon2 parameter %q", k)
		}
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return nil, errors.New("bad salt encoding")
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil {
		return nil, errors.New("bad hash encoding")
	}
	p.SaltLen, p.KeyLen = len(salt), uint32(len(key))
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &PHC{Params: p, Salt: salt, Key: key}, nil
}

// VerifyPassword reports whether password matches the PHC hash, comparing
// in constant time.
func VerifyPassword(password, phc string) (bool, error) {
	h, err := ParsePHC(phc)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(password), h.Salt, h.Params.Time, h.Params.MemoryKiB, h.Params.Threads, h.Params.KeyLen)
	return subtle.ConstantTimeCompare(key, h.Key) == 1, nil
}
