.buffer A f32 16x16
.buffer b f32 4294967296
halt
